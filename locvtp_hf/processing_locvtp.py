"""Processor of LocVTP: the video processor (clip sampling) and a BERT-like tokenizer, saved and loaded together."""

from collections.abc import Sequence

from transformers import BatchFeature, ProcessorMixin
from transformers.utils import logging

from .video_processing_locvtp import make_video_list


logger = logging.get_logger(__name__)


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
    >>> inputs = processor(videos=["a.mp4", frames], text=["a man opens the door", "a dog runs"],
    ...                    spans=[(3.0, 9.5), None], return_tensors="pt")
    >>> inputs["pixel_values_videos"].shape  # [B, T, F, C, H, W]
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
        **kwargs,
    ) -> BatchFeature:
        r"""
        Args:
            videos (file path, array `[N, H, W, C]`, list of frames, or a list of those, *optional*):
                The videos; see [`LocVTPVideoProcessor`].
            text (`str` or `list[str]`, *optional*):
                One text per video.
            spans (`list[tuple[float, float] | None]`, *optional*):
                Per video, the `(start, end)` in seconds that its text describes; `None` for the whole video.
            training (`bool`, *optional*, defaults to `False`):
                Sample clips at random offsets (training) instead of centred (evaluation).
            video_fps (`float` or `list[float]`, *optional*):
                Frame rate of array or frame-list videos.
            return_tensors (`str`, *optional*):
                `"pt"` for PyTorch tensors.
            kwargs:
                Passed to the video processor (e.g. `generator`).

        Returns:
            [`BatchFeature`] with `pixel_values_videos` (`[B, T, F, C, H, W]`) and `clip_spans` (`[B, T, 2]`, seconds)
            when videos are given, and `input_ids`, `attention_mask`, `special_tokens_mask` (and `token_type_ids` for
            tokenizers that use them) of shape `[B, L]` when texts are given.
        """
        if videos is None and text is None:
            raise ValueError("Give videos, text, or both.")
        data = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            data.update(self._tokenize(texts))
        if videos is not None:
            video_list = make_video_list(videos)
            if text is not None and len(video_list) != len(texts):
                raise ValueError(f"Got {len(video_list)} videos and {len(texts)} texts: give one text per video.")
            data.update(
                self.video_processor(
                    video_list, spans=spans, training=training, video_fps=video_fps, return_tensors=None, **kwargs
                )
            )
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _tokenize(self, texts: list[str]) -> dict:
        for index, sentence in enumerate(texts):
            if not isinstance(sentence, str):
                raise TypeError(f"text[{index}] must be a string, got {type(sentence).__name__}.")
            if not sentence.strip():
                raise ValueError(f"text[{index}] is empty: every video needs a non-empty text.")
        max_length = min(self.max_text_length, self.tokenizer.model_max_length)
        lengths = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
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


__all__ = ["LocVTPProcessor"]
