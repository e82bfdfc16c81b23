"""Processor of LocVTP: the video processor (clip sampling) and a BERT-like tokenizer, saved and loaded together."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from transformers import BatchFeature, ProcessorMixin
from transformers.utils import logging

from .grounding_postprocessing import grounding_moments
from .video_processing_locvtp import make_video_list


if TYPE_CHECKING:
    from .modeling_locvtp import LocVTPTemporalGroundingOutput


logger = logging.get_logger(__name__)

TASKS = (None, "grounding")
# Above this share of unknown tokens among its word tokens, a text gets a warning.
UNKNOWN_TOKEN_WARNING_SHARE = 0.5


class LocVTPProcessor(ProcessorMixin):
    r"""
    Turns videos (with an optional `(start, end)` span each) and texts into the inputs of [`LocVTPModel`].

    Args:
        video_processor ([`LocVTPVideoProcessor`]):
            Samples `num_clips` clips of `frames_per_clip` frames from each video (span) and normalises them.
        tokenizer ([`PreTrainedTokenizerBase`]):
            The tokenizer of the text encoder (BERT, DistilBERT, RoBERTa, MiniLM, ...).
        max_text_length (`int`, *optional*, defaults to 32):
            Texts longer than this many tokens (special tokens included) are truncated, with a warning naming them.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import BertTokenizer
    >>> from locvtp_hf import LocVTPProcessor, LocVTPVideoProcessor

    >>> words = "[PAD] [UNK] [CLS] [SEP] a the man dog opens door runs".split()
    >>> tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(words)})
    >>> processor = LocVTPProcessor(LocVTPVideoProcessor(num_clips=4, frames_per_clip=2), tokenizer)
    >>> frames = np.zeros((50, 48, 64, 3), dtype=np.uint8)  # a decoded 5 s video at 10 fps; file paths work too
    >>> inputs = processor(videos=[frames, frames], text=["a man opens the door", "a dog runs"],
    ...                    spans=[(3.0, 4.5), None], video_fps=10.0, return_tensors="pt")
    >>> inputs["pixel_values_videos"].shape  # [B, T, F, C, H, W]
    torch.Size([2, 4, 2, 3, 224, 224])
    >>> inputs["input_ids"].shape  # [B, L]
    torch.Size([2, 7])
    ```
    """

    def __init__(self, video_processor=None, tokenizer=None, max_text_length: int = 32):
        super().__init__(video_processor, tokenizer)
        self.max_text_length = max_text_length

    def __call__(
        self,
        videos=None,
        text: str | Sequence[str] | None = None,
        spans: Sequence[tuple[float, float] | None] | None = None,
        training: bool = False,
        video_fps: float | Sequence[float] | None = None,
        return_tensors: str | None = None,
        task: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        r"""
        Args:
            videos (file path, array `[N, H, W, C]`, list of frames, or a list of those, *optional*):
                The videos; see [`LocVTPVideoProcessor`].
            text (`str` or `list[str]`, *optional*):
                The texts. One per video (text `i` describes video `i`) when `spans` are given, when `training=True`
                (pre-training pairs) and for `task="grounding"` (query `i` is grounded in video `i`); otherwise any
                number, e.g. class names or queries to score against every video with [`LocVTPModel`].
            spans (`list[tuple[float, float] | None]`, *optional*):
                Per video, the `(start, end)` in seconds that its text describes; `None` for the whole video.
            training (`bool`, *optional*, defaults to `False`):
                Sample clips at random offsets (training) instead of centred (evaluation).
            video_fps (`float` or `list[float]`, *optional*):
                Frame rate of array or frame-list videos.
            return_tensors (`str`, *optional*):
                `"pt"` for PyTorch tensors.
            task (`str`, *optional*):
                `"grounding"`: cut each whole video into clips for [`LocVTPForTemporalGrounding`] (see
                [`~LocVTPVideoProcessor.preprocess_grounding`]); the output then has `pixel_values_videos`
                (`[B, N, F, C, H, W]`, padded to the longest video), `clip_mask` (`[B, N]`), `clip_spans` and
                `video_durations` (`[B]`, seconds). `spans` does not apply. By default, `num_clips` clips per (span of
                a) video, the input of [`LocVTPModel`].
            kwargs:
                Passed to the video processor (e.g. `generator`).

        Returns:
            [`BatchFeature`] with `pixel_values_videos` (`[B, T, F, C, H, W]`) and `clip_spans` (`[B, T, 2]`, seconds)
            when videos are given, and `input_ids`, `attention_mask`, `special_tokens_mask` (and `token_type_ids` for
            tokenizers that use them) of shape `[B, L]` when texts are given.
        """
        if videos is None and text is None:
            raise ValueError("Give videos, text, or both.")
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
        if task == "grounding" and spans is not None:
            raise ValueError("spans do not apply to task='grounding': the whole of each video is cut into clips.")
        data = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            data.update(self._tokenize(texts))
        if videos is not None:
            video_list = make_video_list(videos)
            pairs = {"spans": spans is not None, "training=True": training, "task='grounding'": task == "grounding"}
            if text is not None and len(video_list) != len(texts) and any(pairs.values()):
                reason = ", ".join(name for name, given in pairs.items() if given)
                raise ValueError(
                    f"Got {len(video_list)} videos and {len(texts)} texts: with {reason}, text i goes with video i, "
                    "so give one text per video."
                )
            if task == "grounding":
                video_data = self.video_processor.preprocess_grounding(
                    video_list, training=training, video_fps=video_fps, return_tensors=None, **kwargs
                )
            else:
                video_data = self.video_processor(
                    video_list, spans=spans, training=training, video_fps=video_fps, return_tensors=None, **kwargs
                )
            data.update(video_data)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def post_process_grounding(
        self,
        outputs: "LocVTPTemporalGroundingOutput",
        top_k: int = 5,
        nms_threshold: float | None = 0.5,
        video_durations=None,
        return_saliency: bool = False,
    ) -> list:
        r"""
        The best moments of each query from the output of [`LocVTPForTemporalGrounding`], in seconds, and on
        request each clip's saliency.

        Args:
            outputs ([`LocVTPTemporalGroundingOutput`]):
                The model's output; it carries the video durations when the model was given them (always on the
                raw-video route).
            top_k (`int`, *optional*, defaults to 5):
                Moments per query.
            nms_threshold (`float`, *optional*, defaults to 0.5):
                A moment whose IoU with a better one is above this is dropped (1-D NMS); `None` turns NMS off.
            video_durations (`list[float]` or `torch.Tensor` of shape `[B]`, *optional*):
                Durations in seconds, for outputs of precomputed features given without `video_durations`.
            return_saliency (`bool`, *optional*, defaults to `False`):
                Also return the saliency of every clip (the model needs `config.grounding_saliency_head`).

        Returns:
            `list[list[dict]]`: per query, up to `top_k` `{"start": s, "end": s, "score": p}`, best first. With
            `return_saliency`, per query `{"moments": that list, "saliency": {"times": [[start, end], ...], "scores":
            [...]}}`, one entry per real clip (see [`~locvtp_hf.grounding_postprocessing.grounding_moments`]).
        """
        return grounding_moments(
            outputs,
            top_k=top_k,
            nms_threshold=nms_threshold,
            video_durations=video_durations,
            return_saliency=return_saliency,
        )

    def _tokenize(self, texts: list[str]) -> dict:
        if not texts:
            raise ValueError("text is an empty list: give at least one sentence (or leave text out).")
        for index, sentence in enumerate(texts):
            if not isinstance(sentence, str):
                raise TypeError(f"text[{index}] must be a string, got {type(sentence).__name__}.")
            if not sentence.strip():
                raise ValueError(f"text[{index}] is empty: every video needs a non-empty text.")
        max_length = min(self.max_text_length, self.tokenizer.model_max_length)
        encoded = self.tokenizer(texts, return_special_tokens_mask=True)
        self._warn_about_unknown_tokens(encoded)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        truncated = [index for index, length in enumerate(lengths) if length > max_length]
        if truncated:
            logger.warning(
                f"text{truncated} are longer than {max_length} tokens and were truncated (longest: {max(lengths)} "
                "tokens); raise max_text_length to keep them whole."
            )
        return dict(
            self.tokenizer(
                texts, padding=True, truncation=True, max_length=max_length, return_special_tokens_mask=True
            )
        )

    def _warn_about_unknown_tokens(self, encoded) -> None:
        """Warns about texts whose word tokens are mostly the unknown token: almost always a tokenizer that does not
        match the data (another language, casing or vocabulary than the text encoder was trained with)."""
        unk_id = self.tokenizer.unk_token_id
        if unk_id is None:
            return
        mostly_unknown = []
        for index, (ids, special) in enumerate(zip(encoded["input_ids"], encoded["special_tokens_mask"])):
            words = [token for token, is_special in zip(ids, special) if not is_special]
            share = words.count(unk_id) / len(words) if words else 0.0
            if share > UNKNOWN_TOKEN_WARNING_SHARE:
                mostly_unknown.append(f"text[{index}] ({share:.0%})")
        if mostly_unknown:
            shown = ", ".join(mostly_unknown[:5])
            if len(mostly_unknown) > 5:
                shown += f" and {len(mostly_unknown) - 5} more texts"
            logger.warning(
                f"Most word tokens of {shown} are the unknown token {self.tokenizer.unk_token}: the tokenizer "
                f"({type(self.tokenizer).__name__}) probably does not match these texts or the text encoder; check "
                "that the processor's tokenizer is the one the model was trained with."
            )

__all__ = ["LocVTPProcessor"]
