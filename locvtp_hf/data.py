"""Pre-training data: (video, span, text) rows turned into sampled clips in DataLoader workers, and batched with the
tokenizer. A video that cannot be read is skipped and counted, never a crash mid-epoch."""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature

from .processing_locvtp import LocVTPProcessor
from .video_io import VideoDecodingError


class VideoTextPairDataset(torch.utils.data.Dataset):
    """
    Map-style dataset of pre-training pairs. Each item samples the clips of one row's span with the processor's
    video processor, at random offsets when `training` (drawn from a generator seeded by `(seed, epoch, index)`, so
    that the same epoch gives the same clips in any process, with any number of workers, and after a resume).

    Args:
        rows: anything indexable whose items are mappings with `video` (a path, or a key that `load_video` turns
            into a video), `text`, and optional `start` / `end` in seconds (missing or `None`: the whole video),
            e.g. a `datasets.Dataset`.
        processor ([`LocVTPProcessor`]): its video processor samples the clips.
        load_video (`Callable`, *optional*): maps a row's `video` to what the video processor takes (a path or a
            uint8 array `[N, H, W, 3]`); the identity when not given.
        video_fps (`float`, *optional*): frame rate of the arrays that `load_video` returns.
        training (`bool`): random clip offsets (training) or centred ones (evaluation).
        seed (`int`): seed of the clip offsets.

    Items are dicts with `pixel_values_videos` (`[T, F, C, H, W]`), `clip_spans` (`[T, 2]`) and `text`, or, for a
    row whose video cannot be read, `{"error": "<video>: <reason>"}`.
    """

    def __init__(
        self,
        rows,
        processor: LocVTPProcessor,
        load_video: Callable[[Any], Any] | None = None,
        video_fps: float | None = None,
        training: bool = True,
        seed: int = 0,
    ):
        self.rows = rows
        self.video_processor = processor.video_processor
        self.load_video = load_video
        self.video_fps = video_fps
        self.training = training
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        start, end = row.get("start"), row.get("end")
        span = None if start is None or end is None else (float(start), float(end))
        try:
            video = self.load_video(row["video"]) if self.load_video is not None else row["video"]
            clips = self.video_processor(
                [video],
                spans=[span],
                training=self.training,
                video_fps=self.video_fps,
                generator=np.random.default_rng([self.seed, self.epoch, index]),
                return_tensors="pt",
            )
        except (VideoDecodingError, FileNotFoundError, ValueError) as error:
            return {"error": f"{row['video']}: {error}"}
        return {
            "pixel_values_videos": clips["pixel_values_videos"][0],
            "clip_spans": clips["clip_spans"][0],
            "text": row["text"],
        }


class VideoTextCollator:
    """
    Stacks the clips of the readable items and tokenizes their texts with the processor's tokenizer.

    Returns a [`BatchFeature`] with `pixel_values_videos` (`[B, T, F, C, H, W]`), `clip_spans`, the text inputs, and
    `skipped`: the errors of the items left out (not a model input; pop it before calling the model).
    """

    def __init__(self, processor: LocVTPProcessor):
        self.processor = processor

    def __call__(self, items: list[dict]) -> BatchFeature:
        readable = [item for item in items if "error" not in item]
        skipped = [item["error"] for item in items if "error" in item]
        if not readable:
            raise VideoDecodingError(f"No video of this batch could be read: {skipped}")
        batch = self.processor(text=[item["text"] for item in readable], return_tensors="pt")
        batch["pixel_values_videos"] = torch.stack([item["pixel_values_videos"] for item in readable])
        batch["clip_spans"] = torch.stack([item["clip_spans"] for item in readable])
        batch["skipped"] = skipped
        return batch
