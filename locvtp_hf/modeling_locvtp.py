"""PyTorch LocVTP: a clip encoder and a text encoder projected to a joint space (`LocVTPModel`), pre-trained with
LocVTP's coarse, fine-grained and temporal-aware contrastive losses (`LocVTPForPreTraining`), and its retrieval and
temporal grounding heads."""

import contextlib
import copy
import inspect
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.models.timesformer.configuration_timesformer import TimesformerConfig
from transformers.models.timesformer.modeling_timesformer import (
    TimeSformerAttention,
    TimesformerModel,
    TimesformerSelfAttention,
)
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_locvtp import LocVTPConfig
from .loss import (
    LocVTPLoss,
    LocVTPLossOutput,
    retrieval_contrastive_loss,
    retrieval_similarity,
    saliency_loss,
    temporal_grounding_loss,
)
from .moment_geometry import candidate_diagonals, candidate_moment_times, pool_clips_to_positions


if TYPE_CHECKING:
    from transformers import CLIPModel


logger = logging.get_logger(__name__)

# Seconds by which a target moment may overshoot its video (float rounding of annotations) before it is an error.
MOMENT_TOLERANCE = 1e-3


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

    logits_per_video (`torch.FloatTensor` of shape `(video_batch_size, text_batch_size)`):
        `exp(alpha) * <z_i, s_j>`: the scaled similarity of every video to every text of this batch.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, video_batch_size)`):
        The transpose of `logits_per_video`.
    video_embeds (`torch.FloatTensor` of shape `(video_batch_size, projection_dim)`):
        L2-normalised video embeddings `z`.
    clip_embeds (`torch.FloatTensor` of shape `(video_batch_size, num_clips, projection_dim)`):
        L2-normalised clip embeddings `v`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`):
        L2-normalised sentence embeddings `s`.
    word_embeds (`torch.FloatTensor` of shape `(text_batch_size, sequence_length, projection_dim)`):
        L2-normalised word embeddings `w` (zero where `word_mask` is False).
    word_mask (`torch.BoolTensor` of shape `(text_batch_size, sequence_length)`):
        True for real words (special tokens and padding are False).
    clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
        Each clip's `(start, end)` in seconds, passed through from the processor.
    vision_model_output, text_model_output:
        The outputs of [`LocVTPModel.get_video_features`] and [`LocVTPModel.get_text_features`].
    """

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


@dataclass
class LocVTPForPreTrainingOutput(LocVTPOutput):
    r"""
    Output of [`LocVTPForPreTraining`]: every field of [`LocVTPOutput`] (the outputs of [`LocVTPModel`] the losses were
    computed from), then the losses.

    loss (`torch.FloatTensor` of shape `()`):
        `coarse_loss_weight * loss_coarse + fine_loss_weight * loss_fine + temporal_loss_weight * loss_temporal`.
    loss_coarse, loss_fine, loss_temporal (`torch.FloatTensor` of shape `()`, *optional*):
        Each term of the loss; `None` when its weight is 0 (it is then not computed).
    loss_temporal_cross_modal, loss_temporal_intra_video (`torch.FloatTensor` of shape `()`, *optional*):
        The two parts of `loss_temporal`, unweighted: `loss_temporal = (temporal_cross_modal_weight *
        loss_temporal_cross_modal + temporal_intra_video_weight * loss_temporal_intra_video) / 2`.
    """

    loss: torch.FloatTensor | None = None
    loss_coarse: torch.FloatTensor | None = None
    loss_fine: torch.FloatTensor | None = None
    loss_temporal: torch.FloatTensor | None = None
    loss_temporal_cross_modal: torch.FloatTensor | None = None
    loss_temporal_intra_video: torch.FloatTensor | None = None


@dataclass
class LocVTPRetrievalOutput(ModelOutput):
    r"""
    Output of [`LocVTPForRetrieval`].

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        Symmetric InfoNCE of the paired texts and videos over the global batch (all processes) on the scaled score.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, video_batch_size)`):
        `exp(alpha) * score(text_i, video_j)`, where the score is `(1 - w) * <s, z> + w * fine` with
        `w = config.retrieval_fusion_weight` (see [`LocVTPForRetrieval.similarity`]).
    logits_per_video (`torch.FloatTensor` of shape `(video_batch_size, text_batch_size)`):
        The transpose of `logits_per_text`.
    text_embeds (`torch.FloatTensor` of shape `(text_batch_size, projection_dim)`):
        L2-normalised sentence embeddings `s`.
    video_embeds (`torch.FloatTensor` of shape `(video_batch_size, projection_dim)`):
        L2-normalised video embeddings `z`.
    clip_embeds (`torch.FloatTensor` of shape `(video_batch_size, num_clips, projection_dim)`):
        L2-normalised clip embeddings `v`.
    word_embeds (`torch.FloatTensor` of shape `(text_batch_size, sequence_length, projection_dim)`):
        L2-normalised word embeddings `w` (zero where `word_mask` is False).
    word_mask (`torch.BoolTensor` of shape `(text_batch_size, sequence_length)`):
        True for real words.
    vision_model_output, text_model_output:
        The outputs of [`LocVTPModel.get_video_features`] and [`LocVTPModel.get_text_features`].
    """

    loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    clip_embeds: torch.FloatTensor | None = None
    word_embeds: torch.FloatTensor | None = None
    word_mask: torch.BoolTensor | None = None
    vision_model_output: LocVTPVideoModelOutput | None = None
    text_model_output: LocVTPTextModelOutput | None = None

    def to_tuple(self) -> tuple[Any]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


@dataclass
class LocVTPTemporalGroundingOutput(ModelOutput):
    r"""
    Output of [`LocVTPForTemporalGrounding`]. `N` is `config.grounding_num_positions`; the candidate moment `(i, j)`
    covers positions `i` to `j` of the video cut into `N` equal positions, i.e. from `i / N` to `(j + 1) / N` of its
    duration.

    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `target_moments` or `saliency_labels` is given):
        The grounding loss: `loss_moment + config.grounding_saliency_loss_weight * loss_saliency`, of the terms whose
        targets were given.
    logits (`torch.FloatTensor` of shape `(batch_size, N, N)`):
        Score logit of every candidate moment; `-inf` in the cells that are not candidates (`j < i`, and the cells
        that the sparse layout leaves out), see `moment_mask`.
    scores (`torch.FloatTensor` of shape `(batch_size, N, N)`):
        `sigmoid(logits)`: the predicted scaled IoU of every candidate; 0 where `moment_mask` is False.
    moment_mask (`torch.BoolTensor` of shape `(N, N)`):
        True for the cells that are candidate moments.
    candidate_moments (`torch.FloatTensor` of shape `(batch_size, N, N, 2)`, *optional*, returned when
    `video_durations` is given):
        `(start, end)` in seconds of the moment of every cell.
    video_durations (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
        The durations in seconds the model was given, so that post-processing needs nothing else.
    video_features (`torch.FloatTensor` of shape `(batch_size, num_clips, projection_dim)`):
        The clip features the head consumed: computed by [`~LocVTPForTemporalGrounding.get_clip_features`] from
        `pixel_values_videos`, or the `video_features` that were given. Zero at padded clips.
    video_mask (`torch.BoolTensor` of shape `(batch_size, num_clips)`):
        True for real clips, False for padding.
    text_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        The L2-normalised sentence embeddings `s` of the queries.
    clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
        Each clip's `(start, end)` in seconds, passed through from the processor.
    loss_moment (`torch.FloatTensor` of shape `()`, *optional*, returned when `target_moments` is given):
        Binary cross-entropy of every candidate moment's score against its IoU with the target moment, scaled from
        `[grounding_iou_min, grounding_iou_max]` to `[0, 1]`, averaged over the candidates of the batch.
    loss_saliency (`torch.FloatTensor` of shape `()`, *optional*, returned when `saliency_labels` is given):
        Binary cross-entropy of each clip's saliency logit against its label, averaged over the labelled real clips
        of the batch ([`~locvtp_hf.loss.saliency_loss`]).
    saliency_logits (`torch.FloatTensor` of shape `(batch_size, num_clips)`, *optional*, returned with
    `config.grounding_saliency_head`):
        Saliency logit of every clip of the model's input (a clip of `pixel_values_videos`, or a row of
        `video_features`): how well it matches the query. `-inf` at padded clips.
    saliency_scores (`torch.FloatTensor` of shape `(batch_size, num_clips)`, *optional*, returned with
    `config.grounding_saliency_head`):
        `sigmoid(saliency_logits)`, in `[0, 1]`; 0 at padded clips.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    moment_mask: torch.BoolTensor | None = None
    candidate_moments: torch.FloatTensor | None = None
    video_durations: torch.FloatTensor | None = None
    video_features: torch.FloatTensor | None = None
    video_mask: torch.BoolTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    clip_spans: torch.FloatTensor | None = None
    loss_moment: torch.FloatTensor | None = None
    loss_saliency: torch.FloatTensor | None = None
    saliency_logits: torch.FloatTensor | None = None
    saliency_scores: torch.FloatTensor | None = None


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


class LocVTPMaskedConv2d(nn.Conv2d):
    """A zero-padded ("same") 2D convolution over the temporal map and a ReLU; non-candidate cells are zeroed."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, hidden_states: torch.Tensor, moment_mask: torch.Tensor) -> torch.Tensor:
        return F.relu(super().forward(hidden_states)) * moment_mask


class LocVTPTemporalGroundingHead(nn.Module):
    """
    The 2D temporal adjacent network (2D-TAN) head over LocVTP features: clip features pooled to `N` positions, a 2D
    map whose cell `(i, j)` is the max over positions `i..j` (only at candidate cells), fused with the sentence
    embedding by a Hadamard product and L2 normalisation, masked 2D convolutions, and one score logit per cell.
    """

    def __init__(self, config: LocVTPConfig):
        super().__init__()
        hidden_size = config.grounding_hidden_size
        self.num_positions = config.grounding_num_positions
        self.diagonals = candidate_diagonals(config.grounding_num_positions, config.grounding_pooling_counts)
        self.clip_projection = nn.Linear(config.projection_dim, hidden_size)
        self.text_projection = nn.Linear(config.projection_dim, hidden_size)
        self.map_projection = nn.Conv2d(hidden_size, hidden_size, kernel_size=1)
        self.map_convs = nn.ModuleList(
            LocVTPMaskedConv2d(hidden_size, config.grounding_conv_kernel_size)
            for _ in range(config.grounding_num_conv_layers)
        )
        self.score = nn.Conv2d(hidden_size, 1, kernel_size=1)

    def moment_mask(self, device: torch.device | None = None) -> torch.Tensor:
        """`[N, N]` bool: True for the cells that are candidate moments."""
        mask = torch.eye(self.num_positions, dtype=torch.bool, device=device)
        for offset, stride in self.diagonals:
            starts = torch.arange(0, self.num_positions - offset, stride, device=device)
            mask[starts, starts + offset] = True
        return mask

    def span_max_map(self, position_features: torch.Tensor) -> torch.Tensor:
        """
        `[B, C, N]` -> `[B, C, N, N]`: cell `(i, j)` is the max over positions `i..j` at candidate cells, else 0.
        Each diagonal is pooled from the previous one (a max of 2 neighbours, or of 3 with stride 2 where the stride
        doubles), so the map costs one max per candidate cell.
        """
        batch_size, channels, num_positions = position_features.shape
        span_map = position_features.new_zeros(batch_size, channels, num_positions, num_positions)
        positions = torch.arange(num_positions, device=position_features.device)
        span_map[:, :, positions, positions] = position_features
        pooled, previous_stride = position_features, 1
        for offset, stride in self.diagonals:
            if stride == previous_stride:
                pooled = torch.maximum(pooled[..., :-1], pooled[..., 1:])
            else:
                pooled = F.max_pool1d(pooled, kernel_size=3, stride=2)
            previous_stride = stride
            starts = torch.arange(0, num_positions - offset, stride, device=position_features.device)
            span_map[:, :, starts, starts + offset] = pooled[..., : len(starts)]
        return span_map

    def forward(
        self, video_features: torch.Tensor, video_mask: torch.Tensor, text_embeds: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            video_features (`[B, num_clips, projection_dim]`): clip features.
            video_mask (`[B, num_clips]`, bool): True for real clips.
            text_embeds (`[B, projection_dim]`): sentence embeddings.

        Returns:
            `[B, N, N]` score logits, `-inf` where the cell is not a candidate.
        """
        clip_hidden = F.relu(self.clip_projection(video_features))
        position_hidden = pool_clips_to_positions(clip_hidden, video_mask, self.num_positions)
        span_map = self.map_projection(self.span_max_map(position_hidden.transpose(1, 2)))
        moment_mask = self.moment_mask(video_features.device)
        text_hidden = self.text_projection(text_embeds)[:, :, None, None]
        hidden_states = F.normalize(text_hidden * span_map, dim=1) * moment_mask
        for conv in self.map_convs:
            hidden_states = conv(hidden_states, moment_mask)
        logits = self.score(hidden_states).squeeze(1)
        return logits.masked_fill(~moment_mask, float("-inf"))


class LocVTPSaliencyHead(nn.Module):
    """
    Per-clip saliency, as the 2D map fuses a moment with the query: each clip feature and the sentence embedding are
    projected, fused by a Hadamard product and L2 normalisation, mixed with the neighbouring clips by a zero-padded 1D
    convolution (kernel 3) and a ReLU, and scored by a linear layer.
    """

    def __init__(self, config: LocVTPConfig):
        super().__init__()
        hidden_size = config.grounding_hidden_size
        self.clip_projection = nn.Linear(config.projection_dim, hidden_size)
        self.text_projection = nn.Linear(config.projection_dim, hidden_size)
        self.temporal_conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=1)
        self.score = nn.Linear(hidden_size, 1)

    def forward(
        self, video_features: torch.Tensor, video_mask: torch.Tensor, text_embeds: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            video_features (`[B, num_clips, projection_dim]`): clip features.
            video_mask (`[B, num_clips]`, bool): True for real clips.
            text_embeds (`[B, projection_dim]`): sentence embeddings.

        Returns:
            `[B, num_clips]` saliency logits, `-inf` at padded clips.
        """
        fused = self.clip_projection(video_features) * self.text_projection(text_embeds)[:, None, :]
        # padding is zeroed so that the last real clip sees the same zeros as the first (and as the video alone)
        fused = F.normalize(fused, dim=-1) * video_mask[..., None]
        hidden_states = F.relu(self.temporal_conv(fused.transpose(1, 2))).transpose(1, 2)
        logits = self.score(hidden_states).squeeze(-1)
        return logits.masked_fill(~video_mask, float("-inf"))


class LocVTPTimesformerSdpaSelfAttention(TimesformerSelfAttention):
    """
    TimeSformer's self-attention (the parameters and state dict keys of `TimesformerSelfAttention`: one `qkv`
    projection) that runs `torch.nn.functional.scaled_dot_product_attention` when `config._attn_implementation` is
    `"sdpa"`: a fused kernel (flash or memory-efficient attention on CUDA) instead of materialising the
    `[batch, heads, tokens, tokens]` probabilities. With `"eager"`, or `output_attentions=True` (which needs the
    probabilities), it is the eager parent. The implementation is read at every call, so `set_attn_implementation`
    switches it.
    """

    def __init__(self, config: TimesformerConfig):
        super().__init__(config)
        self.config = config

    @classmethod
    def from_eager(cls, eager: TimesformerSelfAttention, config: TimesformerConfig):
        """The module over `eager`'s own parameter tensors: nothing is copied or drawn at random."""
        with torch.device("meta"):
            module = cls(config)
        module.load_state_dict(eager.state_dict(), assign=True)
        return module

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, ...]:
        """
        Args:
            hidden_states (`torch.FloatTensor` of shape `(batch_size, tokens, hidden_size)`):
                The tokens that attend to each other: the patches of one frame and the class token (spatial
                attention), or the frames of one patch (temporal attention).
            output_attentions (`bool`): Also return the probabilities, `(batch_size, heads, tokens, tokens)`.

        Returns:
            `tuple`: the attended tokens, `(batch_size, tokens, hidden_size)`, and the probabilities if asked for.
        """
        if output_attentions or self.config._attn_implementation != "sdpa":
            return super().forward(hidden_states, output_attentions)
        batch_size, num_tokens, hidden_size = hidden_states.shape
        # [3, batch, heads, tokens, head_dim]
        query, key, value = (
            self.qkv(hidden_states)
            .reshape(batch_size, num_tokens, 3, self.num_heads, hidden_size // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        context = F.scaled_dot_product_attention(
            query, key, value, dropout_p=self.attn_drop.p if self.training else 0.0, scale=self.scale
        )
        return (context.transpose(1, 2).reshape(batch_size, num_tokens, hidden_size),)


class LocVTPTimesformerModel(TimesformerModel):
    """
    `TimesformerModel` with [`LocVTPTimesformerSdpaSelfAttention`] in every attention block, so that it supports
    `attn_implementation="sdpa"` (its default, as for the towers that transformers gives SDPA) as well as `"eager"`.
    Its parameters, state dict and outputs are `TimesformerModel`'s: checkpoints load either way. LocVTP builds its
    TimeSformer clip encoders with this class.
    """

    _supports_sdpa = True

    def __init__(self, config: TimesformerConfig):
        super().__init__(config)
        for module in list(self.modules()):
            if isinstance(module, TimeSformerAttention):  # the spatial and the temporal attention of every layer
                module.attention = LocVTPTimesformerSdpaSelfAttention.from_eager(module.attention, config)

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        return True  # the attention reads the implementation from the config at every call


def _tower_class(config) -> type[PreTrainedModel]:
    """The base model class of `config`'s type; [`LocVTPTimesformerModel`] for TimeSformer."""
    return LocVTPTimesformerModel if isinstance(config, TimesformerConfig) else MODEL_MAPPING[type(config)]


def _tower_from_config(config, **kwargs) -> PreTrainedModel:
    """The base model of `config`'s type, without the pooling layer that LocVTP does not use (BERT, ViT)."""
    return _tower_class(config)._from_config(config, **_no_pooler_kwargs(config), **kwargs)


def _no_pooler_kwargs(config) -> dict:
    model_class = _tower_class(config)
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


def _pretrained_tower(name_or_path: str, sub_config: str, **kwargs) -> PreTrainedModel:
    """Loads a pretrained base model; for a two-tower checkpoint (e.g. CLIP) the tower named by `sub_config`."""
    config = kwargs.pop("config", None) or AutoConfig.from_pretrained(
        name_or_path, **{key: kwargs[key] for key in ("revision", "token", "cache_dir") if key in kwargs}
    )
    if sub_config in getattr(config, "sub_configs", {}):
        config = getattr(config, sub_config)
    return _tower_class(config).from_pretrained(name_or_path, config=config, **_no_pooler_kwargs(config), **kwargs)


def _check_mask(name: str, mask: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """A padding mask as bool of `shape`, with at least one real clip per video; all True when not given."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (batch, clips), got {tuple(mask.shape)}.")
    mask = mask.bool()
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{name} marks no clip of video(s) {empty} of the batch as real: each video needs one.")
    return mask


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
        if isinstance(module, LocVTPMaskedConv2d):
            # a deep ReLU stack over an L2-normalised map: keep the activations' scale from layer to layer
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
            return
        super()._init_weights(module)
        if isinstance(module, LocVTPModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: str,
        text_model_name_or_path: str,
        **kwargs,
    ) -> "LocVTPPreTrainedModel":
        r"""
        Builds a LocVTP model of any class from a pretrained clip encoder and a pretrained text encoder (Hub ids or
        local folders); the projections, the logit scale and what the class adds to [`LocVTPModel`] (the context
        projection head of [`LocVTPForPreTraining`], a task head) are new.

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
        >>> model = LocVTPModel.from_vision_text_pretrained(  # doctest: +SKIP
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
        # becoming sub-configs resets the towers' attention implementations: keep those they were loaded with
        implementations = {
            "vision_config": vision_model.config._attn_implementation,
            "text_config": text_model.config._attn_implementation,
        }
        config = LocVTPConfig(vision_config=vision_model.config, text_config=text_model.config, **kwargs)
        model = cls(config, vision_model=vision_model, text_model=text_model)
        model.set_attn_implementation(implementations)
        logger.warning(
            f"The projections and the logit scale of {cls.__name__} (and its context projection head or task head, "
            "if any) are newly initialized: pre-train the model before using its embeddings."
        )
        return model

    @classmethod
    def from_clip(cls, clip_model_name_or_path: "str | os.PathLike | CLIPModel", **kwargs) -> "LocVTPPreTrainedModel":
        r"""
        Builds a LocVTP model from a CLIP checkpoint: CLIP's vision tower encodes the frames of each clip, CLIP's text
        tower the sentences, and CLIP's projections and logit scale are copied, so the model is a working zero-shot
        video-text model before any LocVTP pre-training. A clip embedding is then
        `normalize(mean over the clip's frames of CLIP's image embedding)` and a sentence embedding is CLIP's text
        embedding (the end-of-text token state, `sentence_pooling="pooler"`). Any class of LocVTP can be built so;
        only what it adds to [`LocVTPModel`] is new (the context projection head of [`LocVTPForPreTraining`], used by
        the temporal loss alone, or a task head).

        Pair it with a [`LocVTPProcessor`] built on CLIP's tokenizer and a [`LocVTPVideoProcessor`] with CLIP's image
        size and normalisation (`image_mean` / `image_std`).

        Args:
            clip_model_name_or_path (`str`, `os.PathLike` or `CLIPModel`):
                A CLIP checkpoint (Hub id, e.g. `openai/clip-vit-base-patch32`, or local folder), or a loaded
                `CLIPModel`, whose weights are copied (it is left unchanged).
            kwargs:
                `clip_*` arguments go to `CLIPModel.from_pretrained` (e.g. `clip_revision`, `clip_dtype`); the others
                are [`LocVTPConfig`] fields (e.g. `num_clips=8, frames_per_clip=4`). `projection_dim` is CLIP's.

        Example:

        ```python
        >>> model = LocVTPModel.from_clip(  # doctest: +SKIP
        ...     "openai/clip-vit-base-patch32", num_clips=8, frames_per_clip=4
        ... )
        ```
        """
        from transformers import CLIPModel  # only this constructor needs CLIP's modeling code

        clip_kwargs = {key[len("clip_") :]: kwargs.pop(key) for key in list(kwargs) if key.startswith("clip_")}
        if isinstance(clip_model_name_or_path, (str, os.PathLike)):
            hub_kwargs = {key: clip_kwargs[key] for key in ("revision", "token", "cache_dir") if key in clip_kwargs}
            model_type = AutoConfig.from_pretrained(clip_model_name_or_path, **hub_kwargs).model_type
            if model_type != "clip":
                raise ValueError(
                    f"from_clip needs a CLIP checkpoint (model_type 'clip'), but {str(clip_model_name_or_path)!r} is "
                    f"a {model_type!r} one: use from_vision_text_pretrained for other towers."
                )
            clip = CLIPModel.from_pretrained(clip_model_name_or_path, **clip_kwargs)
        elif isinstance(clip_model_name_or_path, CLIPModel):
            if clip_kwargs:
                raise ValueError(f"{sorted(clip_kwargs)} only apply when from_clip loads the CLIP checkpoint itself.")
            clip = clip_model_name_or_path
        else:
            raise TypeError(
                "from_clip takes a CLIP Hub id, a local folder or a transformers CLIPModel, got "
                f"{type(clip_model_name_or_path).__name__}."
            )
        projection_dim = kwargs.pop("projection_dim", clip.config.projection_dim)
        if projection_dim != clip.config.projection_dim:
            raise ValueError(
                f"projection_dim={projection_dim} but CLIP's projections map to {clip.config.projection_dim} "
                "dimensions: from_clip keeps CLIP's projections, so leave projection_dim out."
            )
        kwargs.setdefault("sentence_pooling", "pooler")
        kwargs.setdefault("vision_pooling", "pooler")
        config = LocVTPConfig(
            vision_config=copy.deepcopy(clip.config.vision_config),
            text_config=copy.deepcopy(clip.config.text_config),
            projection_dim=projection_dim,
            logit_scale_init_value=clip.config.logit_scale_init_value,
            **kwargs,
        )
        model = cls(config)
        encoder = model.base_model
        for name in ("vision_model", "text_model", "visual_projection", "text_projection"):
            getattr(encoder, name).load_state_dict(getattr(clip, name).state_dict())
        with torch.no_grad():
            encoder.logit_scale.copy_(clip.logit_scale.reshape(1))
        return model.to(clip.dtype)


class LocVTPModel(LocVTPPreTrainedModel):
    r"""
    LocVTP: localization-oriented video-text pre-training (Cao et al., ECCV 2022).

    Every clip of `pixel_values_videos` (`[B, T, F, C, H, W]`) goes through the clip encoder on its own and is
    projected to `v[b, t]`; the video embedding `z[b]` is the normalised mean of its clips. Texts give a sentence
    embedding `s[b]` and word embeddings `w[b, n]`. The forward scores every video against every text, as
    `CLIPModel` does; [`LocVTPForPreTraining`] adds the pre-training losses.
    """

    # pre-training checkpoints (LocVTPForPreTraining, and LocVTPModel before it existed) hold the context head
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)context_head\."]

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
        # one element rather than a scalar: FSDP2 cannot shard 0-d parameters
        self.logit_scale = nn.Parameter(torch.tensor([config.logit_scale_init_value]))
        self.post_init()

    def get_logit_scale(self) -> torch.Tensor:
        """The scalar `exp(alpha)` of the coarse loss, `alpha` clamped to `config.logit_scale_max`."""
        return self.logit_scale.clamp(max=self.config.logit_scale_max).exp()[0]

    def get_input_embeddings(self) -> nn.Module:
        """The text encoder's token embeddings (what `resize_token_embeddings` and FSDP's wrapping look for)."""
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_input_embeddings(value)

    def freeze_towers(self, vision: bool = False, text: bool = False) -> None:
        """
        Fixes the weights of the clip encoder (`vision=True`) and/or of the text encoder (`text=True`); a tower not
        frozen trains. The projections and the logit scale are left as they are.
        """
        self.vision_model.requires_grad_(not vision)
        self.text_model.requires_grad_(not text)

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
        if num_clips < 1 or num_frames < 1:
            raise ValueError(
                f"pixel_values_videos holds {num_clips} clip(s) of {num_frames} frame(s) per video: each video needs "
                "at least one clip of one frame."
            )
        expected_channels = getattr(self.config.vision_config, "num_channels", 3)
        if channels != expected_channels:
            raise ValueError(
                f"The video frames have {channels} channel(s) but the clip encoder takes {expected_channels} "
                "(vision_config.num_channels): give RGB frames, as the video processor returns them."
            )
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
        self._check_token_ids(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        for name, mask in (("attention_mask", attention_mask), ("special_tokens_mask", special_tokens_mask)):
            if mask is not None and mask.shape != input_ids.shape:
                raise ValueError(
                    f"{name} must have the shape of input_ids {tuple(input_ids.shape)} (texts, tokens), got "
                    f"{tuple(mask.shape)}: pass the mask the tokenizer returned with these input_ids."
                )
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
        if self.config.sentence_pooling == "pooler":
            sentence = getattr(outputs, "pooler_output", None)
            if sentence is None:
                raise ValueError(
                    f"sentence_pooling='pooler' but {type(self.text_model).__name__} returns no pooled output (LocVTP "
                    "builds BERT-like text encoders without their pooling layer): use 'cls' or 'mean'."
                )
        elif self.config.sentence_pooling == "cls":
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

    def _check_token_ids(self, input_ids: torch.Tensor) -> None:
        """Clear errors for texts the text encoder cannot read: longer than its positions, or with token ids outside
        its vocabulary (a tokenizer of another model), which would otherwise fail deep inside the embedding layer."""
        text_config = self.config.text_config
        max_length = getattr(text_config, "max_position_embeddings", None)
        if max_length is not None and input_ids.shape[-1] > max_length:
            raise ValueError(
                f"input_ids has {input_ids.shape[-1]} tokens per text but the text encoder has {max_length} positions "
                "(text_config.max_position_embeddings): tokenize with truncation=True and max_length at most that."
            )
        # one reduction and one read per call; the read waits for the device, so it is skipped inside a compiled
        # graph, which it would break
        if input_ids.numel() and not torch.compiler.is_compiling():
            smallest, largest = torch.stack(torch.aminmax(input_ids)).tolist()
            if smallest < 0 or largest >= text_config.vocab_size:
                raise ValueError(
                    f"input_ids holds token id {smallest if smallest < 0 else largest}, outside the text encoder's "
                    f"vocabulary of {text_config.vocab_size} tokens: the tokenizer does not match the text encoder "
                    "(use the processor saved with the model)."
                )

    def get_clip_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        clip_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> torch.FloatTensor:
        r"""
        The clip features of whole videos: the L2-normalised LocVTP clip embeddings `v` (the features the grounding
        head consumes as `video_features`, and that zero-shot grounding compares with sentences). Only real clips are
        encoded, `chunk_size` at a time, so without gradients (inference, a frozen encoder) the encoder's memory does
        not grow with the length of the video; with gradients every chunk's activations are kept for the backward
        pass. Gradients flow unless the caller disables them (the
        forward does when the encoder is frozen).

        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch, clips, frames_per_clip, channels, height, width)`):
                Clips of whole videos from `LocVTPProcessor(..., task="grounding")`, padded to the longest video.
            clip_mask (`torch.Tensor` of shape `(batch_size, num_clips)`, *optional*):
                1 for real clips, 0 for padding. All clips are real when not given.
            chunk_size (`int`, *optional*):
                Clips encoded at once; defaults to `config.grounding_clip_chunk_size`.

        Returns:
            `torch.FloatTensor` of shape `(batch_size, num_clips, projection_dim)`, zero at padded clips.
        """
        if pixel_values_videos.dim() != 6:
            raise ValueError(
                "pixel_values_videos must be [batch, clips, frames, channels, height, width], got shape "
                f"{tuple(pixel_values_videos.shape)}."
            )
        clip_mask = _check_mask("clip_mask", clip_mask, pixel_values_videos.shape[:2], pixel_values_videos.device)
        if chunk_size is None:
            chunk_size = self.config.grounding_clip_chunk_size
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size is the number of clips encoded at once: a positive int, got {chunk_size!r}.")
        video_index, clip_index = clip_mask.nonzero(as_tuple=True)
        chunks = []
        for start in range(0, len(video_index), chunk_size):
            chunk = slice(start, start + chunk_size)
            clips = pixel_values_videos[video_index[chunk], clip_index[chunk]]
            chunks.append(self.get_video_features(clips[None]).clip_embeds[0])
        features = torch.cat(chunks)
        batch_size, num_clips = clip_mask.shape
        return features.new_zeros(batch_size, num_clips, features.shape[-1]).index_put(
            (video_index, clip_index), features
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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> LocVTPOutput:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(video_batch_size, num_clips, frames_per_clip,
        num_channels, height, width)`):
            Clips from [`LocVTPVideoProcessor`].
        input_ids, attention_mask, token_type_ids, position_ids, special_tokens_mask:
            Text inputs, see [`~LocVTPModel.get_text_features`]; any number of texts, each scored against every
            video (`logits_per_video` is `[videos, texts]`), as with `CLIPModel`.
        clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
            Each clip's time span in seconds, from the processor; returned unchanged in the output.

        Example:

        ```python
        >>> inputs = processor(videos=["a.mp4", "b.mp4"], text=["a man opens a door", "a dog runs"],  # doctest: +SKIP
        ...                    return_tensors="pt")
        >>> outputs = model(**inputs)  # doctest: +SKIP
        >>> outputs.logits_per_video.shape, outputs.clip_embeds.shape  # doctest: +SKIP
        ```
        """
        if pixel_values_videos is None or input_ids is None:
            raise ValueError("LocVTPModel needs both pixel_values_videos and input_ids.")
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
        logits_per_video = self.get_logit_scale() * video_embeds @ text_embeds.T
        return LocVTPOutput(
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


class LocVTPForPreTraining(LocVTPPreTrainedModel):
    r"""
    LocVTP pre-training: a [`LocVTPModel`], the context projection head `g(x, delta)` and the coarse, fine-grained
    and temporal-aware losses, computed over the global batch (all processes) on paired videos and texts.

    Its checkpoints load into [`LocVTPModel`], [`LocVTPForRetrieval`] and [`LocVTPForTemporalGrounding`] (the context
    head is then left out), and it loads the checkpoints of `LocVTPModel` saved before this class existed (keys
    without the `locvtp.` prefix, with their context head).
    """

    def __init__(
        self,
        config: LocVTPConfig,
        vision_model: PreTrainedModel | None = None,
        text_model: PreTrainedModel | None = None,
    ):
        r"""
        vision_model, text_model (`PreTrainedModel`, *optional*):
            Ready towers for the [`LocVTPModel`], see there.
        """
        super().__init__(config)
        self.locvtp = LocVTPModel(config, vision_model=vision_model, text_model=text_model)
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
            chunk_size=config.loss_chunk_size,
            fine_negatives=config.fine_negatives,
            temporal_cross_modal_weight=config.temporal_cross_modal_weight,
            temporal_intra_video_weight=config.temporal_intra_video_weight,
            discovery_mutual=config.discovery_mutual,
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The text encoder's token embeddings."""
        return self.locvtp.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.locvtp.set_input_embeddings(value)

    def freeze_towers(self, vision: bool = False, text: bool = False) -> None:
        """
        [`LocVTPModel.freeze_towers`], and the parameters of a loss term switched off stay fixed (the context head
        when `temporal_loss_weight` is 0, the logit scale when `coarse_loss_weight` is 0): DDP needs every trainable
        parameter to get a gradient.
        """
        self.locvtp.freeze_towers(vision=vision, text=text)
        self.context_head.requires_grad_(self.config.temporal_loss_weight > 0)
        self.locvtp.logit_scale.requires_grad_(self.config.coarse_loss_weight > 0)

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
        context_offsets: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_loss: bool = True,
    ) -> LocVTPForPreTrainingOutput:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_clips, frames_per_clip, num_channels,
        height, width)`):
            Clips from [`LocVTPVideoProcessor`].
        input_ids, attention_mask, token_type_ids, position_ids, special_tokens_mask:
            Text inputs, see [`~LocVTPModel.get_text_features`]. Video `i` is paired with text `i`: as many texts as
            videos.
        clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
            Each clip's time span in seconds, from the processor; returned unchanged in the output.
        context_offsets (`torch.LongTensor` of shape `(batch_size, num_clips)`, *optional*):
            The offset `delta` of the context clip for each reference clip in the temporal loss; drawn at random when
            not given.
        return_loss (`bool`, *optional*, defaults to `True`):
            `False` returns the embeddings only (the loss fields are `None`): the first half of the forward pass, whose
            second half is [`~LocVTPForPreTraining.compute_losses`]. Gradient accumulation with cached embeddings
            calls the two halves apart, to compute the losses over several micro-batches.

        Example:

        ```python
        >>> inputs = processor(videos=["a.mp4", "b.mp4"], text=["a man opens a door", "a dog runs"],  # doctest: +SKIP
        ...                    spans=[(3.0, 9.5), None], return_tensors="pt")
        >>> outputs = model(**inputs)  # doctest: +SKIP
        >>> outputs.loss, outputs.clip_embeds.shape  # doctest: +SKIP
        ```
        """
        if pixel_values_videos is None or input_ids is None:
            raise ValueError("LocVTPForPreTraining needs both pixel_values_videos and input_ids.")
        if pixel_values_videos.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"Got {pixel_values_videos.shape[0]} videos and {input_ids.shape[0]} texts: pre-training pairs "
                "video i with text i, so give one text per video (LocVTPModel scores any numbers against each other)."
            )
        outputs = self.locvtp(
            pixel_values_videos=pixel_values_videos,
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            special_tokens_mask=special_tokens_mask,
            clip_spans=clip_spans,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        if not return_loss:
            return LocVTPForPreTrainingOutput(**outputs)
        losses = self.compute_losses(
            clip_embeds=outputs.clip_embeds,
            video_embeds=outputs.video_embeds,
            text_embeds=outputs.text_embeds,
            word_embeds=outputs.word_embeds,
            word_mask=outputs.word_mask,
            discovery_mask=self.discovery_mask(input_ids, outputs.word_mask),
            context_offsets=context_offsets,
        )
        return LocVTPForPreTrainingOutput(
            loss=losses.loss,
            loss_coarse=losses.coarse,
            loss_fine=losses.fine,
            loss_temporal=losses.temporal,
            loss_temporal_cross_modal=losses.temporal_cross_modal,
            loss_temporal_intra_video=losses.temporal_intra_video,
            **outputs,
        )

    def discovery_mask(self, input_ids: torch.LongTensor, word_mask: torch.Tensor) -> torch.Tensor | None:
        """
        The words clip-word correspondence discovery may pick: `word_mask` without the tokens of
        `config.discovery_excluded_token_ids` (`[B, L]` bool), or `None` (all of `word_mask`) when none are excluded.
        """
        if not self.config.discovery_excluded_token_ids:
            return None
        excluded = torch.tensor(self.config.discovery_excluded_token_ids, device=input_ids.device)
        return word_mask.bool() & ~torch.isin(input_ids, excluded)

    def compute_losses(
        self,
        clip_embeds: torch.Tensor,
        video_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        word_embeds: torch.Tensor,
        word_mask: torch.Tensor,
        discovery_mask: torch.Tensor | None = None,
        context_offsets: torch.LongTensor | None = None,
        loss_parameter_gradients: bool = True,
    ) -> LocVTPLossOutput:
        r"""
        The three LocVTP losses of embeddings (the second half of the forward pass), over the global batch (all
        processes). The rows may come from several forward passes: gradient accumulation with cached embeddings
        computes them over all its micro-batches, the current one's embeddings with gradients and the others' without.

        Args:
            clip_embeds (`torch.FloatTensor` of shape `(batch_size, num_clips, projection_dim)`):
                L2-normalised clip embeddings, as [`LocVTPModel`] returns them; likewise `video_embeds`.
            video_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
                L2-normalised video embeddings.
            text_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
                L2-normalised sentence embeddings of the paired texts.
            word_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, projection_dim)`):
                L2-normalised word embeddings (rows padded further with zeros are allowed).
            word_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`):
                True for real words (False for special tokens and padding).
            discovery_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, *optional*):
                The words discovery may pick, from [`~LocVTPForPreTraining.discovery_mask`]; all of `word_mask` when
                not given.
            context_offsets (`torch.LongTensor` of shape `(batch_size, num_clips)`, *optional*):
                The offsets of the temporal loss; drawn at random when not given.
            loss_parameter_gradients (`bool`, *optional*, defaults to `True`):
                Whether the parameters that the losses use directly (the logit scale and the context head) get
                gradients from this call. Gradient accumulation with cached embeddings back-propagates the same losses
                once per micro-batch: it passes `True` for one of them only, so that those gradients count once.

        Returns:
            [`~locvtp_hf.loss.LocVTPLossOutput`]: the weighted total and each term.
        """
        logit_scale, context_head = self.locvtp.get_logit_scale(), self.context_head
        if not loss_parameter_gradients:
            logit_scale = logit_scale.detach()
            fixed = {name: parameter.detach() for name, parameter in self.context_head.named_parameters()}

            def context_head(clip_embeds, offsets):
                return torch.func.functional_call(self.context_head, fixed, (clip_embeds, offsets))

        return self.locvtp_loss(
            clip_embeds=clip_embeds,
            video_embeds=video_embeds,
            text_embeds=text_embeds,
            word_embeds=word_embeds,
            word_mask=word_mask,
            logit_scale=logit_scale,
            context_head=context_head,
            context_offsets=context_offsets,
            discovery_mask=discovery_mask,
        )


class LocVTPForRetrieval(LocVTPPreTrainedModel):
    r"""
    LocVTP for text-video retrieval: a [`LocVTPModel`] scored by the coarse video-sentence similarity `<z, s>`,
    optionally fused with the fine-grained clip-word score (`config.retrieval_fusion_weight`), and fine-tuned with a
    symmetric InfoNCE loss over the global batch.

    A pre-training checkpoint ([`LocVTPForPreTraining`] or [`LocVTPModel`]) loads with all the weights of its
    [`LocVTPModel`] (`LocVTPForRetrieval.from_pretrained`); its context projection head is left out. transformers has
    no `Auto` class for retrieval: load with this class (an `AutoModel` load of a retrieval checkpoint gives the
    underlying [`LocVTPModel`]).
    """

    def __init__(
        self,
        config: LocVTPConfig,
        vision_model: PreTrainedModel | None = None,
        text_model: PreTrainedModel | None = None,
    ):
        r"""
        vision_model, text_model (`PreTrainedModel`, *optional*):
            Ready towers for the [`LocVTPModel`], see there.
        """
        super().__init__(config)
        self.locvtp = LocVTPModel(config, vision_model=vision_model, text_model=text_model)
        self.post_init()

    def get_video_features(self, pixel_values_videos: torch.FloatTensor, **kwargs) -> LocVTPVideoModelOutput:
        """[`LocVTPModel.get_video_features`]: `pooler_output` `[B, D]` and `clip_embeds` `[B, T, D]`."""
        return self.locvtp.get_video_features(pixel_values_videos, **kwargs)

    def get_text_features(self, input_ids: torch.LongTensor, **kwargs) -> LocVTPTextModelOutput:
        """[`LocVTPModel.get_text_features`]: `pooler_output` `[B, D]`, `word_embeds` `[B, L, D]`, `word_mask`."""
        return self.locvtp.get_text_features(input_ids, **kwargs)

    def similarity(
        self,
        text_embeds: torch.Tensor,
        video_embeds: torch.Tensor,
        word_embeds: torch.Tensor | None = None,
        word_mask: torch.Tensor | None = None,
        clip_embeds: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        r"""
        The unscaled retrieval score of every text with every video, `(1 - w) * <s, z> + w * fine` with
        `w = config.retrieval_fusion_weight`; `fine` is the mean over the video's clips of each clip's best similarity
        to a word of the text, and needs `word_embeds`, `word_mask` and `clip_embeds` when `w > 0`.

        Args:
            text_embeds (`[Nt, D]`): Sentence embeddings, as returned by `get_text_features`.
            video_embeds (`[Nv, D]`): Video embeddings, as returned by `get_video_features`.
            word_embeds (`[Nt, L, D]`): Word embeddings, as returned by `get_text_features`.
            word_mask (`[Nt, L]`): The word mask returned with them.
            clip_embeds (`[Nv, T, D]`): Clip embeddings, as returned by `get_video_features`.
            chunk_size (`int`, *optional*): texts scored at once by the fine-grained score, to bound its memory.

        Returns:
            `[Nt, Nv]` scores.
        """
        return retrieval_similarity(
            text_embeds,
            video_embeds,
            self.config.retrieval_fusion_weight,
            word_embeds,
            word_mask,
            clip_embeds,
            chunk_size,
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
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
    ) -> LocVTPRetrievalOutput:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(video_batch_size, num_clips, frames_per_clip,
        num_channels, height, width)`):
            Clips from [`LocVTPVideoProcessor`].
        input_ids, attention_mask, token_type_ids, position_ids, special_tokens_mask:
            Text inputs, see [`~LocVTPModel.get_text_features`].
        clip_spans (`torch.FloatTensor`, *optional*):
            Accepted so that the processor's output passes as is; not used.
        return_loss (`bool`, *optional*):
            Compute the InfoNCE loss over the global batch; text `i` is paired with video `i`, so both batches must
            have the same size.

        Example:

        ```python
        >>> inputs = processor(videos=["a.mp4", "b.mp4"], text=["a man opens a door", "a dog runs"],  # doctest: +SKIP
        ...                    return_tensors="pt")
        >>> outputs = model(**inputs, return_loss=True)  # doctest: +SKIP
        >>> outputs.loss, outputs.logits_per_text.shape  # [texts, videos]  # doctest: +SKIP
        ```
        """
        if pixel_values_videos is None or input_ids is None:
            raise ValueError("LocVTPForRetrieval needs both pixel_values_videos and input_ids.")
        if return_loss and pixel_values_videos.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"return_loss=True pairs text i with video i, but got {input_ids.shape[0]} texts and "
                f"{pixel_values_videos.shape[0]} videos."
            )
        video_outputs = self.locvtp.get_video_features(
            pixel_values_videos, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        text_outputs = self.locvtp.get_text_features(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            special_tokens_mask=special_tokens_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        embeds = dict(
            text_embeds=text_outputs.pooler_output,
            video_embeds=video_outputs.pooler_output,
            word_embeds=text_outputs.word_embeds,
            word_mask=text_outputs.word_mask,
            clip_embeds=video_outputs.clip_embeds,
        )
        logit_scale = self.locvtp.get_logit_scale()
        logits_per_text = logit_scale * self.similarity(**embeds)
        loss = None
        if return_loss:
            loss = retrieval_contrastive_loss(
                logit_scale=logit_scale, fusion_weight=self.config.retrieval_fusion_weight, **embeds
            )
        return LocVTPRetrievalOutput(
            loss=loss,
            logits_per_text=logits_per_text,
            logits_per_video=logits_per_text.T,
            **embeds,
            vision_model_output=video_outputs,
            text_model_output=text_outputs,
        )


class LocVTPForTemporalGrounding(LocVTPPreTrainedModel):
    r"""
    LocVTP with a 2D-TAN temporal grounding head: given an untrimmed video and a sentence, it scores every candidate
    moment `(i, j)` of a 2D map over `config.grounding_num_positions` positions of the video.

    The video comes either as raw clips (`pixel_values_videos` `[B, num_clips, F, C, H, W]` with a `clip_mask`: the
    whole video cut into clips by `LocVTPProcessor(..., task="grounding")`), encoded by the LocVTP encoder
    `config.grounding_clip_chunk_size` clips at a time, or as precomputed clip features (`video_features`
    `[B, num_clips, projection_dim]` with a `video_mask`), the output of
    [`~LocVTPForTemporalGrounding.get_clip_features`]. Either way the features are pooled to `N` positions. The query
    goes through the LocVTP text encoder.

    With `config.grounding_saliency_head` it also scores each clip's saliency for the query (a
    [`LocVTPSaliencyHead`], trained from `saliency_labels` jointly with the moments).

    With `config.grounding_freeze_encoder` the encoder stays in eval mode and runs without gradients.
    """

    def __init__(
        self,
        config: LocVTPConfig,
        vision_model: PreTrainedModel | None = None,
        text_model: PreTrainedModel | None = None,
    ):
        r"""
        vision_model, text_model (`PreTrainedModel`, *optional*):
            Ready towers for the [`LocVTPModel`], see there.
        """
        super().__init__(config)
        self.locvtp = LocVTPModel(config, vision_model=vision_model, text_model=text_model)
        self.grounding_head = LocVTPTemporalGroundingHead(config)
        self.saliency_head = LocVTPSaliencyHead(config) if config.grounding_saliency_head else None
        self.post_init()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.grounding_freeze_encoder:
            self.locvtp.eval()
        return self

    def _encoder_context(self):
        return torch.no_grad() if self.config.grounding_freeze_encoder else contextlib.nullcontext()

    def freeze_towers(self, vision: bool = False, text: bool = False) -> None:
        """
        Chooses what trains: the grounding head and the saliency head always; the clip encoder and the text encoder,
        each with its projection, unless frozen; the logit scale, which grounding does not use, never (DDP needs
        every trainable parameter to get a gradient). Freezing both towers sets `config.grounding_freeze_encoder`,
        so that the encoder runs in eval mode and without gradients.
        """
        self.locvtp.freeze_towers(vision=vision, text=text)
        self.locvtp.visual_projection.requires_grad_(not vision)
        self.locvtp.text_projection.requires_grad_(not text)
        self.locvtp.logit_scale.requires_grad_(False)
        self.grounding_head.requires_grad_(True)
        if self.saliency_head is not None:
            self.saliency_head.requires_grad_(True)
        self.config.grounding_freeze_encoder = vision and text
        self.train(self.training)

    def get_clip_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        clip_mask: torch.Tensor | None = None,
        chunk_size: int | None = None,
    ) -> torch.FloatTensor:
        r"""
        The clip features of whole videos (`[batch_size, num_clips, projection_dim]`, zero at padded clips), encoded
        `chunk_size` clips at a time: [`LocVTPModel.get_clip_features`] of the encoder.
        """
        return self.locvtp.get_clip_features(pixel_values_videos, clip_mask, chunk_size)

    @can_return_tuple
    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        clip_mask: torch.Tensor | None = None,
        video_features: torch.FloatTensor | None = None,
        video_mask: torch.Tensor | None = None,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        special_tokens_mask: torch.Tensor | None = None,
        video_durations: torch.FloatTensor | None = None,
        target_moments: torch.FloatTensor | None = None,
        clip_spans: torch.FloatTensor | None = None,
        saliency_labels: torch.FloatTensor | None = None,
    ) -> LocVTPTemporalGroundingOutput:
        r"""
        pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_clips, frames_per_clip, num_channels,
        height, width)`, *optional*):
            Raw route: every clip of each whole video, from `LocVTPProcessor(..., task="grounding")`.
        clip_mask (`torch.Tensor` of shape `(batch_size, num_clips)`, *optional*):
            1 for real clips of `pixel_values_videos`, 0 for padding.
        video_features (`torch.FloatTensor` of shape `(batch_size, num_clips, projection_dim)`, *optional*):
            Feature route, instead of `pixel_values_videos`: clip features from
            [`~LocVTPForTemporalGrounding.get_clip_features`] (e.g. saved by `examples/extract_features.py`), in
            temporal order, evenly tiling each video.
        video_mask (`torch.Tensor` of shape `(batch_size, num_clips)`, *optional*):
            1 for real entries of `video_features`, 0 for padding.
        input_ids, attention_mask, token_type_ids, position_ids, special_tokens_mask:
            The queries, one per video; see [`~LocVTPModel.get_text_features`].
        video_durations (`torch.FloatTensor` of shape `(batch_size,)`, *optional*):
            Duration of each video in seconds. Needed with `target_moments`; gives `candidate_moments` in seconds.
        target_moments (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*):
            The ground-truth `(start, end)` of each query in seconds, inside its video. Computes `loss_moment`.
        clip_spans (`torch.FloatTensor` of shape `(batch_size, num_clips, 2)`, *optional*):
            Each clip's `(start, end)` in seconds, from the processor; returned unchanged.
        saliency_labels (`torch.FloatTensor` of shape `(batch_size, num_clips)`, *optional*):
            The target saliency of each clip of the input (of `pixel_values_videos` / `clip_mask`, or of
            `video_features` / `video_mask`), in `[0, 1]`; NaN for a clip without a label. Padded clips are
            ignored. Computes `loss_saliency`; needs `config.grounding_saliency_head`.

        Example:

        ```python
        >>> inputs = processor(videos=["long_video.mp4"], text=["the person opens the fridge"],  # doctest: +SKIP
        ...                    task="grounding", return_tensors="pt")
        >>> outputs = model(**inputs)  # doctest: +SKIP
        >>> processor.post_process_grounding(outputs, top_k=5)  # doctest: +SKIP
        ```
        """
        if (pixel_values_videos is None) == (video_features is None):
            raise ValueError(
                "Give the video either as pixel_values_videos (raw clips) or as video_features (precomputed clip "
                "features), not both and not neither."
            )
        if input_ids is None:
            raise ValueError("LocVTPForTemporalGrounding needs the queries: input_ids.")
        batch_size = input_ids.shape[0]
        if video_features is not None:
            video_mask = self._check_video_features(video_features, video_mask)
            video_source = "video_features"
        else:
            video_mask = _check_mask("clip_mask", clip_mask, pixel_values_videos.shape[:2], pixel_values_videos.device)
            video_source = "pixel_values_videos"
        video_batch_size = (video_features if video_features is not None else pixel_values_videos).shape[0]
        if video_batch_size != batch_size:
            raise ValueError(
                f"Got {video_batch_size} videos ({video_source}) and {batch_size} queries (input_ids): give one "
                "query per video (repeat a video's features to ask it several queries)."
            )
        if video_durations is not None:
            video_durations = self._check_durations(video_durations, batch_size, video_mask.device)
        if saliency_labels is not None:
            saliency_labels = self._check_saliency_labels(saliency_labels, video_mask)

        with self._encoder_context():
            if video_features is None:
                video_features = self.get_clip_features(pixel_values_videos, video_mask)
            text_embeds = self.locvtp.get_text_features(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                special_tokens_mask=special_tokens_mask,
            ).pooler_output
        logits = self.grounding_head(video_features, video_mask, text_embeds)
        moment_mask = self.grounding_head.moment_mask(logits.device)

        candidate_moments = None
        if video_durations is not None:
            candidate_moments = candidate_moment_times(self.config.grounding_num_positions, video_durations)

        saliency_logits = saliency_scores = None
        if self.saliency_head is not None:
            saliency_logits = self.saliency_head(video_features, video_mask, text_embeds)
            saliency_scores = saliency_logits.sigmoid()

        loss = loss_moment = loss_saliency = None
        if target_moments is not None:
            if video_durations is None:
                raise ValueError("target_moments are in seconds: give video_durations (seconds) too.")
            targets = self._check_targets(target_moments, video_durations, batch_size)
            loss = loss_moment = temporal_grounding_loss(
                logits[:, moment_mask],
                candidate_moments[:, moment_mask],
                targets,
                self.config.grounding_iou_min,
                self.config.grounding_iou_max,
            )
        if saliency_labels is not None:
            loss_saliency = saliency_loss(saliency_logits, saliency_labels, video_mask)
            weighted = self.config.grounding_saliency_loss_weight * loss_saliency
            loss = weighted if loss is None else loss + weighted

        return LocVTPTemporalGroundingOutput(
            loss=loss,
            logits=logits,
            scores=logits.sigmoid(),
            moment_mask=moment_mask,
            candidate_moments=candidate_moments,
            video_durations=video_durations,
            video_features=video_features,
            video_mask=video_mask,
            text_embeds=text_embeds,
            clip_spans=clip_spans,
            loss_moment=loss_moment,
            loss_saliency=loss_saliency,
            saliency_logits=saliency_logits,
            saliency_scores=saliency_scores,
        )

    def _check_saliency_labels(self, saliency_labels: torch.Tensor, video_mask: torch.Tensor) -> torch.Tensor:
        if self.saliency_head is None:
            raise ValueError(
                "saliency_labels were given but this model has no saliency head: build it with "
                "grounding_saliency_head=True in its config (e.g. LocVTPForTemporalGrounding.from_pretrained(path, "
                "grounding_saliency_head=True)) to train per-clip saliency."
            )
        labels = torch.as_tensor(saliency_labels, dtype=torch.float32, device=video_mask.device)
        if labels.shape != video_mask.shape:
            raise ValueError(
                f"saliency_labels must have shape {tuple(video_mask.shape)}, one label per clip of the input "
                f"(batch, clips), got {tuple(labels.shape)}."
            )
        outside = video_mask & ~torch.isnan(labels) & ((labels < 0) | (labels > 1))
        if outside.any():
            video, clip = outside.nonzero()[0].tolist()
            raise ValueError(
                f"saliency_labels must be in [0, 1] (NaN: no label); saliency_labels[{video}, {clip}] = "
                f"{labels[video, clip].item()}."
            )
        return labels

    def _check_video_features(self, video_features: torch.Tensor, video_mask: torch.Tensor | None) -> torch.Tensor:
        if video_features.dim() != 3:
            raise ValueError(
                f"video_features must be [batch, clips, features], got shape {tuple(video_features.shape)}."
            )
        if video_features.shape[-1] != self.config.projection_dim:
            raise ValueError(
                f"video_features have {video_features.shape[-1]} features per clip but this model's clip features "
                f"have projection_dim={self.config.projection_dim}: extract them with this model's "
                "get_clip_features (or examples/extract_features.py)."
            )
        return _check_mask("video_mask", video_mask, video_features.shape[:2], video_features.device)

    @staticmethod
    def _check_durations(video_durations: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
        video_durations = torch.as_tensor(video_durations, dtype=torch.float32, device=device)
        if video_durations.shape != (batch_size,):
            raise ValueError(
                f"video_durations must have shape ({batch_size},), one duration per video, got "
                f"{tuple(video_durations.shape)}."
            )
        bad = (~(torch.isfinite(video_durations) & (video_durations > 0))).nonzero().flatten().tolist()
        if bad:
            raise ValueError(
                f"video_durations must be positive seconds; video(s) {bad} have "
                f"{[video_durations[index].item() for index in bad]}."
            )
        return video_durations

    @staticmethod
    def _check_targets(target_moments: torch.Tensor, video_durations: torch.Tensor, batch_size: int) -> torch.Tensor:
        targets = torch.as_tensor(target_moments, dtype=video_durations.dtype, device=video_durations.device)
        if targets.shape != (batch_size, 2):
            raise ValueError(
                f"target_moments must have shape ({batch_size}, 2), one (start, end) in seconds per query, got "
                f"{tuple(targets.shape)}."
            )
        for index, ((start, end), duration) in enumerate(zip(targets.tolist(), video_durations.tolist())):
            if not (math.isfinite(start) and math.isfinite(end)) or start >= end:
                raise ValueError(f"target_moments[{index}] = ({start}, {end}) s is not a moment: start must be < end.")
            if start < -MOMENT_TOLERANCE or end > duration + MOMENT_TOLERANCE:
                raise ValueError(
                    f"target_moments[{index}] = ({start:.3f}, {end:.3f}) s lies outside its video (video_durations"
                    f"[{index}] = {duration:.3f} s): clip moments to [0, duration] when loading the annotations."
                )
        return torch.minimum(targets.clamp(min=0), video_durations[:, None])


__all__ = [
    "LocVTPForPreTraining",
    "LocVTPForRetrieval",
    "LocVTPForTemporalGrounding",
    "LocVTPModel",
    "LocVTPPreTrainedModel",
    "LocVTPForPreTrainingOutput",
    "LocVTPOutput",
    "LocVTPRetrievalOutput",
    "LocVTPTemporalGroundingOutput",
    "LocVTPVideoModelOutput",
    "LocVTPTextModelOutput",
]
