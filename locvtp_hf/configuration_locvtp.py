"""LocVTP model configuration."""

import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .moment_geometry import default_pooling_counts, pooling_counts_reach


VISION_POOLING_MODES = ("auto", "cls", "mean", "pooler")
SENTENCE_POOLING_MODES = ("cls", "mean", "pooler")
# Where the fine-grained terms draw their negatives from: the other samples of the global batch only, or also the
# non-positive words / clips of the query's own sample.
FINE_NEGATIVES = ("other_samples", "same_and_other_samples")


@strict
class LocVTPConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LocVTPModel`]: a clip encoder and a text encoder, each any transformers backbone built from
    its own sub-config, plus the knobs of the LocVTP method (projections, clip sampling, the three losses).

    The defaults are the paper's setting: a ViT-B/16 space-time video transformer (TimeSformer-base) over clips of
    `frames_per_clip` frames and a BERT-base text encoder, projected to a 256-d joint space.

    Args:
        vision_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the clip encoder. A video backbone (a config with `num_frames`, e.g. TimeSformer, VideoMAE,
            ViViT) encodes one clip as one video; an image backbone (ViT, CLIP or SigLIP vision, DINOv2) encodes the
            frames one by one and their features are mean-pooled. Given as a dict, `num_frames` defaults to
            `frames_per_clip`. Defaults to TimeSformer-base.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of a BERT-like text encoder (BERT, DistilBERT, RoBERTa, MiniLM, ...). Defaults to BERT-base.
        projection_dim (`int`, *optional*, defaults to 256):
            Dimension of the joint video-text space.
        num_clips (`int`, *optional*, defaults to 8):
            Clips `T` sampled from a training span.
        frames_per_clip (`int`, *optional*, defaults to 4):
            Frames `F` per clip. Must equal `vision_config.num_frames` for video backbones.
        vision_pooling (`str`, *optional*, defaults to `"auto"`):
            How a backbone output becomes one feature per clip (per frame for image backbones): `"pooler"` (the
            backbone's pooled output), `"cls"` (first token), `"mean"` (mean of all tokens), or `"auto"`: the
            pooled output when the backbone returns one, else the class token when it has one, else the mean.
        sentence_pooling (`str`, *optional*, defaults to `"cls"`):
            Sentence feature: the `[CLS]` state (`"cls"`), the mean of the word states (`"mean"`), or the text
            encoder's pooled output (`"pooler"`; e.g. CLIP's end-of-text token state after the final layer norm, as
            [`LocVTPModel.from_clip`] sets). LocVTP builds BERT-like towers without their pooling layer, so
            `"pooler"` needs a text encoder that pools by itself (CLIP text).
        logit_scale_init_value (`float`, *optional*, defaults to ln(1/0.07)):
            Initial value of the learnable log logit scale `alpha` of the coarse loss.
        logit_scale_max (`float`, *optional*, defaults to ln(100)):
            `alpha` is clamped to this value.
        coarse_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the video-sentence contrastive loss. 0 skips it.
        fine_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight `lambda_fine` of the clip-word loss. 0 skips it.
        temporal_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight `lambda_temporal` of the temporal-aware loss. 0 skips it.
        fine_temperature (`float`, *optional*, defaults to 0.07):
            Temperature `tau_f` of the clip-word and cross-modal warp terms.
        fine_topk_words (`int`, *optional*, defaults to 1):
            Words discovered as positives of each clip.
        fine_topk_clips (`int`, *optional*, defaults to 1):
            Clips discovered as positives of each word.
        context_window (`int`, *optional*, defaults to 2):
            `W`: the context projection head warps clips at most `W` positions away.
        temporal_sigma (`float`, *optional*, defaults to 1.0):
            `sigma` of the Gaussian that turns near neighbours into soft negatives in the temporal-aware term.
        temporal_temperature (`float`, *optional*, defaults to 0.07):
            Temperature of the temporal-aware intra-video term.
        fine_negatives (`str`, *optional*, defaults to `"other_samples"`):
            Where the negatives of the clip-word and cross-modal warp terms come from: `"other_samples"` (the words
            and clips of the other samples of the global batch; the sample's own non-positive words and clips are
            left out) or `"same_and_other_samples"` (also the sample's own words and clips that discovery did not
            pick, each once: "this clip rather than the video's other clips", as the official code does, without its
            sampling with replacement).
        discovery_excluded_token_ids (`list[int]`, *optional*):
            Token ids that correspondence discovery never picks (e.g. stop words and punctuation, see
            [`~locvtp_hf.stop_words.stop_word_token_ids`]); they still serve as other samples' negatives. Empty: any
            word may be picked.
        discovery_mutual (`bool`, *optional*, defaults to `False`):
            Keep only the clip-word pairs that discovery picks from both sides (the clip among the word's top clips
            and the word among the clip's top words). The method pairs every clip with its top words, so with
            loosely aligned captions the clips that show something else are pulled toward the sentence too; with
            `True` they are no queries of the clip-word and warp terms. See `docs/method.md`.
        temporal_cross_modal_weight (`float`, *optional*, defaults to 1.0):
            Weight of the cross-modal warp term inside the temporal loss, `L_temporal = (w_c * warp + w_i * intra) /
            2`. 0 skips it (an ablation).
        temporal_intra_video_weight (`float`, *optional*, defaults to 1.0):
            Weight `w_i` of the temporal-aware intra-video term inside the temporal loss. 0 skips it.
        loss_chunk_size (`int`, *optional*, defaults to 64):
            Samples of a process whose clip-word and warp logits against the global batch are built at once; the
            chunks are recomputed in the backward pass, so memory stays that of one chunk
            (`loss_chunk_size x num_clips x global batch x words`). `None` builds them all at once. Does not change
            the losses or their gradients.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the initialisation of the projections and the context head.
        retrieval_fusion_weight (`float`, *optional*, defaults to 0.0):
            `w` in [0, 1] of the text-video score of [`LocVTPForRetrieval`]:
            `(1 - w) * <z, s> + w * fine`, where `fine` is the fine-grained clip-word score (the mean over the video's
            clips of each clip's best similarity to a word of the text). 0: the coarse score alone.
        grounding_num_positions (`int`, *optional*, defaults to 16):
            `N`, the side of the 2D temporal map of [`LocVTPForTemporalGrounding`]: the clip features of a video are
            pooled to `N` equal positions and the candidate moments are the spans `(i, j)`, `i <= j`, of positions.
            16 is 2D-TAN's setting for Charades-STA; use 64 for ActivityNet Captions.
        grounding_pooling_counts (`list[int]`, *optional*):
            Sparse sampling of long moments, as 2D-TAN's pooling counts: the first `counts[0]` diagonals of the map
            (moments of 2 to `counts[0] + 1` positions) are all candidates; then each group `g` adds `counts[g]`
            diagonals whose length grows by `2**g` positions per diagonal, keeping only moments that start at a
            multiple of `2**g`. `[N - 1]` is the dense map. The counts must reach the whole video (moments of `N`
            positions). Defaults to 2D-TAN's layouts: `[15]` for `N <= 16`, then groups of 8 (`[15, 8, 8]` for 64:
            2D-TAN's `[15, 8, 8, 8]` has the same candidates at 64).
        grounding_hidden_size (`int`, *optional*, defaults to 512):
            Channels of the 2D map and of its convolutions.
        grounding_num_conv_layers (`int`, *optional*, defaults to 8):
            Depth of the stack of masked 2D convolutions over the map (2D-TAN: 8 for Charades-STA, 4 for
            ActivityNet Captions).
        grounding_conv_kernel_size (`int`, *optional*, defaults to 5):
            Kernel size of those convolutions, odd, zero-padded to keep the map's size (2D-TAN: 5 for Charades-STA, 9
            for ActivityNet Captions).
        grounding_iou_min (`float`, *optional*, defaults to 0.5):
            `t_min` of the scaled-IoU target: a candidate whose IoU with the ground truth is at most `t_min` has
            target 0.
        grounding_iou_max (`float`, *optional*, defaults to 1.0):
            `t_max`: IoU at or above it has target 1; in between the target grows linearly.
        grounding_nms_threshold (`float`, *optional*, defaults to 0.5):
            IoU above which a lower-scored moment is suppressed by the 1-D NMS of the `video-temporal-grounding`
            pipeline.
        grounding_freeze_encoder (`bool`, *optional*, defaults to `False`):
            Keep the LocVTP encoder of [`LocVTPForTemporalGrounding`] fixed: it runs in eval mode and without
            gradients, so only the head trains (the paper's protocol, on extracted features).
        grounding_clip_chunk_size (`int`, *optional*, defaults to 32):
            Clips that [`LocVTPForTemporalGrounding`] encodes at once when given raw video, which bounds the memory
            of long videos.
        grounding_saliency_head (`bool`, *optional*, defaults to `False`):
            Give [`LocVTPForTemporalGrounding`] a saliency head beside the 2D map: one score per clip, how well the
            clip matches the query (highlight detection, as Moment-DETR's and UniVTG's saliency scores), trained
            from per-clip `saliency_labels` jointly with the moments. Off: the model and its checkpoints have no
            saliency weights (checkpoints saved before this field load unchanged).
        grounding_saliency_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the saliency loss in the joint grounding loss, `loss = loss_moment + weight * loss_saliency`.

    Example:

    ```python
    >>> from locvtp_hf import LocVTPConfig, LocVTPModel

    >>> config = LocVTPConfig(
    ...     vision_config={"model_type": "videomae", "hidden_size": 64, "num_hidden_layers": 2,
    ...                    "num_attention_heads": 2, "intermediate_size": 128, "image_size": 32, "patch_size": 16},
    ...     text_config={"model_type": "distilbert", "dim": 64, "n_layers": 2, "n_heads": 2, "hidden_dim": 128},
    ...     projection_dim=32, num_clips=4, frames_per_clip=4,
    ... )
    >>> model = LocVTPModel(config)
    ```
    """

    model_type = "locvtp"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="timesformer"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
    }

    vision_config: PreTrainedConfig | dict | None = None
    text_config: PreTrainedConfig | dict | None = None
    projection_dim: int = 256
    num_clips: int = 8
    frames_per_clip: int = 4
    vision_pooling: str = "auto"
    sentence_pooling: str = "cls"
    logit_scale_init_value: float | int = math.log(1 / 0.07)
    logit_scale_max: float | int = math.log(100.0)
    coarse_loss_weight: float | int = 1.0
    fine_loss_weight: float | int = 1.0
    temporal_loss_weight: float | int = 1.0
    fine_temperature: float | int = 0.07
    fine_topk_words: int = 1
    fine_topk_clips: int = 1
    context_window: int = 2
    temporal_sigma: float | int = 1.0
    temporal_temperature: float | int = 0.07
    fine_negatives: str = "other_samples"
    discovery_excluded_token_ids: list[int] | None = None
    discovery_mutual: bool = False
    temporal_cross_modal_weight: float | int = 1.0
    temporal_intra_video_weight: float | int = 1.0
    loss_chunk_size: int | None = 64
    initializer_range: float | int = 0.02
    retrieval_fusion_weight: float | int = 0.0
    grounding_num_positions: int = 16
    grounding_pooling_counts: list[int] | None = None
    grounding_hidden_size: int = 512
    grounding_num_conv_layers: int = 8
    grounding_conv_kernel_size: int = 5
    grounding_iou_min: float | int = 0.5
    grounding_iou_max: float | int = 1.0
    grounding_nms_threshold: float | int = 0.5
    grounding_freeze_encoder: bool = False
    grounding_clip_chunk_size: int = 32
    grounding_saliency_head: bool = False
    grounding_saliency_loss_weight: float | int = 1.0

    def __post_init__(self, **kwargs):
        if self.vision_config is None or isinstance(self.vision_config, dict):
            vision_config = dict(self.vision_config or {})
            vision_config.setdefault("model_type", "timesformer")
            config_class = CONFIG_MAPPING[vision_config["model_type"]]
            if "num_frames" in getattr(config_class, "__dataclass_fields__", {}):
                vision_config.setdefault("num_frames", self.frames_per_clip)
            self.vision_config = vision_config
        if self.grounding_pooling_counts is None:
            self.grounding_pooling_counts = default_pooling_counts(self.grounding_num_positions)
        if __name__.startswith("locvtp_hf."):
            # A checkpoint shared with `save_for_hub` declares the grounding pipeline for users without this package
            # (`custom_pipelines`, which transformers' `pipeline(..., trust_remote_code=True)` runs from the
            # repository's code). Where the package is installed, its own registered pipeline runs the checkpoint:
            # the declaration would make transformers insist on the remote code.
            kwargs.pop("custom_pipelines", None)
        super().__post_init__(**kwargs)
        self._check_values()

    @property
    def is_video_backbone(self) -> bool:
        """Whether the clip encoder takes a whole clip (`[F, C, H, W]`) rather than single frames."""
        return hasattr(self.vision_config, "num_frames")

    @property
    def image_size(self) -> tuple[int, int]:
        """`(height, width)` the clip encoder expects."""
        size = self.vision_config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def _check_values(self):
        if self.vision_pooling not in VISION_POOLING_MODES:
            raise ValueError(f"vision_pooling must be one of {VISION_POOLING_MODES}, got {self.vision_pooling!r}")
        if self.sentence_pooling not in SENTENCE_POOLING_MODES:
            raise ValueError(
                f"sentence_pooling must be one of {SENTENCE_POOLING_MODES}, got {self.sentence_pooling!r}"
            )
        for name in (
            "projection_dim",
            "num_clips",
            "frames_per_clip",
            "fine_topk_words",
            "fine_topk_clips",
            "context_window",
            "grounding_num_positions",
            "grounding_hidden_size",
            "grounding_num_conv_layers",
            "grounding_conv_kernel_size",
            "grounding_clip_chunk_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("fine_temperature", "temporal_temperature", "temporal_sigma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.logit_scale_init_value > self.logit_scale_max:
            raise ValueError(
                f"logit_scale_init_value={self.logit_scale_init_value} is above logit_scale_max="
                f"{self.logit_scale_max}: the scale is clamped to its maximum, where it gets no gradient and would "
                "never train."
            )
        if self.loss_chunk_size is not None and self.loss_chunk_size < 1:
            raise ValueError(f"loss_chunk_size must be at least 1 (or None: no chunking), got {self.loss_chunk_size}")
        for name in (
            "coarse_loss_weight",
            "fine_loss_weight",
            "temporal_loss_weight",
            "temporal_cross_modal_weight",
            "temporal_intra_video_weight",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.temporal_cross_modal_weight == self.temporal_intra_video_weight == 0:
            raise ValueError(
                "temporal_cross_modal_weight and temporal_intra_video_weight are both 0: to skip the temporal loss, "
                "set temporal_loss_weight=0 instead."
            )
        if self.fine_negatives not in FINE_NEGATIVES:
            raise ValueError(f"fine_negatives must be one of {FINE_NEGATIVES}, got {self.fine_negatives!r}")
        if not 0 <= self.retrieval_fusion_weight <= 1:
            raise ValueError(f"retrieval_fusion_weight must be in [0, 1], got {self.retrieval_fusion_weight}")
        self._check_grounding_values()
        if self.is_video_backbone:
            num_frames = self.vision_config.num_frames
            if num_frames != self.frames_per_clip:
                raise ValueError(
                    f"The video backbone ({self.vision_config.model_type}) takes clips of vision_config.num_frames="
                    f"{num_frames} frames but frames_per_clip={self.frames_per_clip}: set them to the same value."
                )
            tubelet_size = getattr(self.vision_config, "tubelet_size", 1)
            if isinstance(tubelet_size, (list, tuple)):  # ViViT: [time, height, width]
                tubelet_size = tubelet_size[0]
            if self.frames_per_clip % tubelet_size:
                raise ValueError(
                    f"frames_per_clip={self.frames_per_clip} is not a multiple of the backbone's tubelet_size="
                    f"{tubelet_size} ({self.vision_config.model_type})."
                )

    def _check_grounding_values(self):
        if self.grounding_conv_kernel_size % 2 == 0:
            raise ValueError(
                "grounding_conv_kernel_size must be odd (the map keeps its size), got "
                f"{self.grounding_conv_kernel_size}"
            )
        if not 0 <= self.grounding_iou_min < self.grounding_iou_max <= 1:
            raise ValueError(
                "The scaled-IoU bounds need 0 <= grounding_iou_min < grounding_iou_max <= 1, got "
                f"{self.grounding_iou_min} and {self.grounding_iou_max}."
            )
        if not self.grounding_saliency_loss_weight >= 0:
            raise ValueError(
                f"grounding_saliency_loss_weight must be >= 0, got {self.grounding_saliency_loss_weight}"
            )
        if not 0 <= self.grounding_nms_threshold <= 1:
            raise ValueError(f"grounding_nms_threshold must be in [0, 1], got {self.grounding_nms_threshold}")
        counts = self.grounding_pooling_counts
        if not counts or any(count < 1 for count in counts):
            raise ValueError(f"grounding_pooling_counts must be a non-empty list of positive counts, got {counts}")
        longest = pooling_counts_reach(counts) + 1
        if longest < self.grounding_num_positions:
            raise ValueError(
                f"grounding_pooling_counts={counts} make candidates of at most {longest} positions, but the map has "
                f"grounding_num_positions={self.grounding_num_positions}: moments longer than {longest} positions "
                f"could not be predicted. Add groups, e.g. {default_pooling_counts(self.grounding_num_positions)}."
            )


__all__ = ["LocVTPConfig"]
