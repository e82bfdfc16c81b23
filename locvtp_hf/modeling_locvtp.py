"""PyTorch LocVTP model: a clip encoder and a text encoder projected to a joint space, trained with LocVTP's coarse,
fine-grained and temporal-aware contrastive losses."""

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_locvtp import LocVTPConfig
from .loss import LocVTPLoss


logger = logging.get_logger(__name__)


@dataclass
class LocVTPVideoModelOutput(BaseModelOutputWithPooling):
    r"""
    Output of [`LocVTPModel.get_video_features`].

    pooler_output (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        The L2-normalised video embedding `z`: the normalised mean of the clip embeddings.
    clip_embeds (`torch.FloatTensor` of shape `(batch_size, num_clips, projection_dim)`):
        The L2-normalised embedding `v` of every clip: the localization features.
    last_hidden_state, hidden_states, attentions:
        The clip encoder's own outputs, for all `batch_size * num_clips` clips (times `frames_per_clip` for image
        backbones) as one batch.
    """

    clip_embeds: torch.FloatTensor | None = None


@dataclass
class LocVTPTextModelOutput(BaseModelOutputWithPooling):
    r"""
    Output of [`LocVTPModel.get_text_features`].

    pooler_output (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        The L2-normalised sentence embedding `s`.
    word_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, projection_dim)`):
        The L2-normalised embedding `w` of every token; zero where `word_mask` is False.
    word_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`):
        True for real words: tokens that are neither special tokens nor padding.
    last_hidden_state, hidden_states, attentions:
        The text encoder's own outputs.
    """

    word_embeds: torch.FloatTensor | None = None
    word_mask: torch.BoolTensor | None = None


@dataclass
class LocVTPOutput(ModelOutput):
    r"""
    Output of [`LocVTPModel`].

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        `coarse_loss_weight * loss_coarse + fine_loss_weight * loss_fine + temporal_loss_weight * loss_temporal`.
    loss_coarse, loss_fine, loss_temporal (`torch.FloatTensor` of shape `()`, *optional*):
        Each term of the loss; `None` when its weight is 0 (it is then not computed) or when `return_loss` is False.
    logits_per_video (`torch.FloatTensor` of shape `(batch_size, batch_size)`):
        `exp(alpha) * <z_i, s_j>`: the scaled similarity of every video to every text of this batch.
    logits_per_text (`torch.FloatTensor` of shape `(batch_size, batch_size)`):
        The transpose of `logits_per_video`.
    video_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised video embeddings `z`.
    clip_embeds (`torch.FloatTensor` of shape `(batch_size, num_clips, projection_dim)`):
        L2-normalised clip embeddings `v`.
    text_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised sentence embeddings `s`.
    word_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, projection_dim)`):
        L2-normalised word embeddings `w` (zero where `word_mask` is False).
    word_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`):
        True for real words (special tokens and padding are False).
    clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
        Each clip's `(start, end)` in seconds, passed through from the processor.
    vision_model_output, text_model_output:
        The outputs of [`LocVTPModel.get_video_features`] and [`LocVTPModel.get_text_features`].
    """

    loss: torch.FloatTensor | None = None
    loss_coarse: torch.FloatTensor | None = None
    loss_fine: torch.FloatTensor | None = None
    loss_temporal: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    clip_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    word_embeds: torch.FloatTensor | None = None
    word_mask: torch.BoolTensor | None = None
    clip_spans: torch.FloatTensor | None = None
    vision_model_output: LocVTPVideoModelOutput | None = None
    text_model_output: LocVTPTextModelOutput | None = None

    def to_tuple(self) -> tuple[Any]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


class LocVTPContextProjectionHead(nn.Module):
    """
    `g(x, delta) = normalize(MLP([x ; e(delta)]))`: warps the embedding of a context clip to the position of a
    reference clip `delta` steps away, `delta` in `[-W, W] \\ {0}`.
    """

    def __init__(self, config: LocVTPConfig):
        super().__init__()
        dim = config.projection_dim
        self.context_window = config.context_window
        self.offset_embedding = nn.Embedding(2 * config.context_window, dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, clip_embeds: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """
        Args:
            clip_embeds (`[..., D]`): context clip embeddings.
            offsets (`[...]`, long): signed offsets `delta`, non-zero, `|delta| <= W`.

        Returns:
            `[..., D]` L2-normalised warped embeddings.
        """
        if (offsets == 0).any() or (offsets.abs() > self.context_window).any():
            raise ValueError(f"Context offsets must be non-zero and at most {self.context_window} in magnitude.")
        # -W..-1 -> 0..W-1 and 1..W -> W..2W-1
        index = offsets + self.context_window - (offsets > 0).long()
        features = torch.cat([clip_embeds, self.offset_embedding(index)], dim=-1)
        return F.normalize(self.mlp(features), dim=-1)


def _tower_from_config(config, **kwargs) -> PreTrainedModel:
    """The base model of `config`'s type, without the pooling layer that LocVTP does not use (BERT, ViT)."""
    return AutoModel.from_config(config, **_no_pooler_kwargs(config), **kwargs)


def _no_pooler_kwargs(config) -> dict:
    model_class = MODEL_MAPPING[type(config)]
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class).parameters else {}


def _word_mask(attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None) -> torch.Tensor:
    """
    `[B, L]` bool mask of real words. Without a `special_tokens_mask`, the first token (`[CLS]`/`<s>`) and the last
    attended token (`[SEP]`/`</s>`) of each text are taken as the special tokens, as BERT-like tokenizers place them.
    """
    mask = attention_mask.bool()
    if special_tokens_mask is not None:
        return mask & ~special_tokens_mask.bool()
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = mask.long().cumsum(-1).argmax(-1, keepdim=True)
    return mask & (positions[None, :] > 0) & (positions[None, :] != last)


class LocVTPPreTrainedModel(PreTrainedModel):
    config: LocVTPConfig
    config_class = LocVTPConfig
    base_model_prefix = "locvtp"
    main_input_name = "pixel_values_videos"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, LocVTPModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


class LocVTPModel(LocVTPPreTrainedModel):
    r"""
    LocVTP: localization-oriented video-text pre-training (Cao et al., ECCV 2022).

    Every clip of `pixel_values_videos` (`[B, T, F, C, H, W]`) goes through the clip encoder on its own and is
    projected to `v[b, t]`; the video embedding `z[b]` is the normalised mean of its clips. Texts give a sentence
    embedding `s[b]` and word embeddings `w[b, n]`. With `return_loss=True` the forward computes the coarse,
    fine-grained and temporal-aware losses over the global batch (all processes).
    """

    def __init__(
        self,
        config: LocVTPConfig,
        vision_model: PreTrainedModel | None = None,
        text_model: PreTrainedModel | None = None,
    ):
        r"""
        vision_model (`PreTrainedModel`, *optional*):
            A ready clip encoder (e.g. pretrained) to use instead of building one from `config.vision_config`.
        text_model (`PreTrainedModel`, *optional*):
            A ready text encoder to use instead of building one from `config.text_config`.
        """
        super().__init__(config)
        self.vision_model = vision_model if vision_model is not None else _tower_from_config(config.vision_config)
        self.text_model = text_model if text_model is not None else _tower_from_config(config.text_config)
        # The towers share the sub-configs, so that attention implementation changes reach them. A ready tower's
        # config became a sub-config of `config`, which reset its attention implementation: choose it again.
        for tower, sub_config in ((self.vision_model, "vision_config"), (self.text_model, "text_config")):
            implementation = tower.config._attn_implementation or tower.get_correct_attn_implementation(None)
            getattr(self.config, sub_config)._attn_implementation = implementation
            tower.config = getattr(self.config, sub_config)

        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.context_head = LocVTPContextProjectionHead(config)
        self.locvtp_loss = LocVTPLoss(
            coarse_weight=config.coarse_loss_weight,
            fine_weight=config.fine_loss_weight,
            temporal_weight=config.temporal_loss_weight,
            fine_temperature=config.fine_temperature,
            fine_topk_words=config.fine_topk_words,
            fine_topk_clips=config.fine_topk_clips,
            context_window=config.context_window,
            temporal_sigma=config.temporal_sigma,
            temporal_temperature=config.temporal_temperature,
        )
        self.post_init()

    def _pool_vision_output(self, outputs) -> torch.Tensor:
        mode = self.config.vision_pooling
        pooled = getattr(outputs, "pooler_output", None)
        if mode == "pooler" or (mode == "auto" and pooled is not None):
            if pooled is None:
                raise ValueError(
                    f"vision_pooling='pooler' but {type(self.vision_model).__name__} has no pooled output."
                )
            return pooled
        has_cls_token = getattr(getattr(self.vision_model, "embeddings", None), "cls_token", None) is not None
        if mode == "cls" and not has_cls_token:
            raise ValueError(f"vision_pooling='cls' but {type(self.vision_model).__name__} has no class token.")
        if mode == "cls" or (mode == "auto" and has_cls_token):
            return outputs.last_hidden_state[:, 0]
        return outputs.last_hidden_state.mean(dim=1)

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> LocVTPVideoModelOutput:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_clips, frames_per_clip, num_channels,
        height, width)`):
            Clips from [`LocVTPVideoProcessor`]. Any number of clips works; each is encoded on its own.

        Returns:
            [`LocVTPVideoModelOutput`] with `pooler_output` (`[B, D]`) and `clip_embeds` (`[B, T, D]`).
        """
        if pixel_values_videos.dim() != 6:
            raise ValueError(
                "pixel_values_videos must be [batch, clips, frames, channels, height, width], got shape "
                f"{tuple(pixel_values_videos.shape)}."
            )
        batch_size, num_clips, num_frames, channels, height, width = pixel_values_videos.shape
        if (height, width) != self.config.image_size:
            raise ValueError(
                f"The video frames are {height}x{width} but the clip encoder ({self.config.vision_config.model_type}) "
                f"expects {self.config.image_size[0]}x{self.config.image_size[1]} (vision_config.image_size): set "
                "the video processor's size and crop_size to the model's image size."
            )
        if self.config.is_video_backbone and num_frames != self.config.frames_per_clip:
            raise ValueError(
                f"The clips have {num_frames} frames but the video backbone takes {self.config.frames_per_clip} "
                "(frames_per_clip): set the video processor's frames_per_clip to the model's."
            )
        if self.config.is_video_backbone:
            clips = pixel_values_videos.reshape(batch_size * num_clips, num_frames, channels, height, width)
        else:
            clips = pixel_values_videos.reshape(batch_size * num_clips * num_frames, channels, height, width)
        outputs = self.vision_model(
            pixel_values=clips,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        features = self._pool_vision_output(outputs)
        # image backbones: mean over the frames of each clip
        features = features.reshape(batch_size, num_clips, -1, features.shape[-1]).mean(dim=2)
        clip_embeds = F.normalize(self.visual_projection(features), dim=-1)
        video_embeds = F.normalize(clip_embeds.mean(dim=1), dim=-1)
        return LocVTPVideoModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            pooler_output=video_embeds,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            clip_embeds=clip_embeds,
        )

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        special_tokens_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> LocVTPTextModelOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
            Token ids from the processor's tokenizer.
        attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for tokens, 0 for padding.
        special_tokens_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 for special tokens. Without it, the first and the last attended token of each text are taken as
            `[CLS]` and `[SEP]`.

        Returns:
            [`LocVTPTextModelOutput`] with `pooler_output` (`[B, D]`), `word_embeds` (`[B, L, D]`) and `word_mask`
            (`[B, L]`).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        optional_inputs = {"token_type_ids": token_type_ids, "position_ids": position_ids}
        outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **{name: value for name, value in optional_inputs.items() if value is not None},
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        word_mask = _word_mask(attention_mask, special_tokens_mask)
        if self.config.sentence_pooling == "cls":
            sentence = hidden_states[:, 0]
        else:
            weights = word_mask.unsqueeze(-1).to(hidden_states.dtype)
            sentence = (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1)
        text_embeds = F.normalize(self.text_projection(sentence), dim=-1)
        word_embeds = F.normalize(self.text_projection(hidden_states), dim=-1) * word_mask.unsqueeze(-1)
        return LocVTPTextModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=text_embeds,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            word_embeds=word_embeds,
            word_mask=word_mask,
        )

    @can_return_tuple
    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        special_tokens_mask: torch.Tensor | None = None,
        clip_spans: torch.FloatTensor | None = None,
        return_loss: bool | None = None,
        context_offsets: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> LocVTPOutput:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_clips, frames_per_clip, num_channels,
        height, width)`):
            Clips from [`LocVTPVideoProcessor`].
        input_ids, attention_mask, token_type_ids, position_ids, special_tokens_mask:
            Text inputs, see [`~LocVTPModel.get_text_features`].
        clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
            Each clip's time span in seconds, from the processor; returned unchanged in the output.
        return_loss (`bool`, *optional*):
            Compute the LocVTP losses over the global batch.
        context_offsets (`torch.LongTensor` of shape `(batch_size, num_clips)`, *optional*):
            The offset `delta` of the context clip for each reference clip in the temporal loss; drawn at random when
            not given.

        Example:

        ```python
        >>> inputs = processor(videos=["a.mp4", "b.mp4"], text=["a man opens a door", "a dog runs"],
        ...                    spans=[(3.0, 9.5), None], return_tensors="pt")
        >>> outputs = model(**inputs, return_loss=True)
        >>> outputs.loss, outputs.clip_embeds.shape
        ```
        """
        if pixel_values_videos is None or input_ids is None:
            raise ValueError("LocVTPModel needs both pixel_values_videos and input_ids.")
        if pixel_values_videos.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"Got {pixel_values_videos.shape[0]} videos and {input_ids.shape[0]} texts: a batch pairs each video "
                "with one text."
            )
        video_outputs = self.get_video_features(
            pixel_values_videos, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        text_outputs = self.get_text_features(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            special_tokens_mask=special_tokens_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        video_embeds, text_embeds = video_outputs.pooler_output, text_outputs.pooler_output
        logit_scale = self.logit_scale.clamp(max=self.config.logit_scale_max).exp()
        logits_per_video = logit_scale * video_embeds @ text_embeds.T

        losses = None
        if return_loss:
            losses = self.locvtp_loss(
                clip_embeds=video_outputs.clip_embeds,
                video_embeds=video_embeds,
                text_embeds=text_embeds,
                word_embeds=text_outputs.word_embeds,
                word_mask=text_outputs.word_mask,
                logit_scale=logit_scale,
                context_head=self.context_head,
                context_offsets=context_offsets,
            )
        return LocVTPOutput(
            loss=losses.loss if losses is not None else None,
            loss_coarse=losses.coarse if losses is not None else None,
            loss_fine=losses.fine if losses is not None else None,
            loss_temporal=losses.temporal if losses is not None else None,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_video.T,
            video_embeds=video_embeds,
            clip_embeds=video_outputs.clip_embeds,
            text_embeds=text_embeds,
            word_embeds=text_outputs.word_embeds,
            word_mask=text_outputs.word_mask,
            clip_spans=clip_spans,
            vision_model_output=video_outputs,
            text_model_output=text_outputs,
        )

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: str,
        text_model_name_or_path: str,
        **kwargs,
    ) -> "LocVTPModel":
        r"""
        Builds a LocVTP model from a pretrained clip encoder and a pretrained text encoder (Hub ids or local folders);
        the projections, logit scale and context head are new.

        Args:
            vision_model_name_or_path (`str`):
                A video backbone (e.g. `facebook/timesformer-base-finetuned-k400`, `MCG-NJU/videomae-base`) or an
                image backbone (e.g. `google/vit-base-patch16-224-in21k`, `openai/clip-vit-base-patch16`, whose vision
                tower is used).
            text_model_name_or_path (`str`):
                A BERT-like encoder (e.g. `google-bert/bert-base-uncased`).
            kwargs:
                `vision_*` / `text_*` arguments go to the `from_pretrained` of that tower (e.g. `vision_revision`,
                `text_dtype`); the others are [`LocVTPConfig`] fields (e.g. `projection_dim=256`). For a video
                backbone `frames_per_clip` defaults to the backbone's `num_frames`.

        Example:

        ```python
        >>> model = LocVTPModel.from_vision_text_pretrained(
        ...     "facebook/timesformer-base-finetuned-k400", "google-bert/bert-base-uncased", projection_dim=256
        ... )
        ```
        """
        vision_kwargs = {key[len("vision_") :]: kwargs.pop(key) for key in list(kwargs) if key.startswith("vision_")}
        text_kwargs = {key[len("text_") :]: kwargs.pop(key) for key in list(kwargs) if key.startswith("text_")}
        vision_model = _pretrained_tower(vision_model_name_or_path, sub_config="vision_config", **vision_kwargs)
        text_model = _pretrained_tower(text_model_name_or_path, sub_config="text_config", **text_kwargs)
        if hasattr(vision_model.config, "num_frames"):
            kwargs.setdefault("frames_per_clip", vision_model.config.num_frames)
        config = LocVTPConfig(vision_config=vision_model.config, text_config=text_model.config, **kwargs)
        model = cls(config, vision_model=vision_model, text_model=text_model)
        logger.warning(
            "The projections, the logit scale and the context projection head of LocVTPModel are newly initialized: "
            "pre-train the model before using its embeddings."
        )
        return model


def _pretrained_tower(name_or_path: str, sub_config: str, **kwargs) -> PreTrainedModel:
    """Loads a pretrained base model; for a two-tower checkpoint (e.g. CLIP) the tower named by `sub_config`."""
    config = kwargs.pop("config", None) or AutoConfig.from_pretrained(
        name_or_path, **{key: kwargs[key] for key in ("revision", "token", "cache_dir") if key in kwargs}
    )
    if sub_config in getattr(config, "sub_configs", {}):
        config = getattr(config, sub_config)
    model_class = MODEL_MAPPING[type(config)]
    return model_class.from_pretrained(name_or_path, config=config, **_no_pooler_kwargs(config), **kwargs)


__all__ = ["LocVTPModel", "LocVTPPreTrainedModel", "LocVTPOutput", "LocVTPVideoModelOutput", "LocVTPTextModelOutput"]
