"""Pre-training data: readers of (video, span, text) rows in the usual layouts, and their clips sampled in DataLoader
workers and batched with the tokenizer. A video that cannot be read is skipped and counted, never a crash
mid-epoch."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import BatchFeature

from .processing_locvtp import LocVTPProcessor
from .video_io import VideoDecodingError


def videofolder_rows(folder: str | Path) -> datasets.Dataset:
    """
    Rows `video` (path), `text`, and `start` / `end` when the metadata has them, from a folder of videos with a
    `metadata.jsonl` or `metadata.csv` (`file_name` relative to the folder, `text`, optional `start`, `end`): the
    `videofolder` layout, where several rows may describe spans of the same video.
    """
    folder = Path(folder)
    for name, builder in (("metadata.jsonl", "json"), ("metadata.csv", "csv")):
        if (folder / name).exists():
            rows = datasets.load_dataset(builder, data_files=str(folder / name), split="train")
            break
    else:
        raise FileNotFoundError(f"{folder} has no metadata.jsonl or metadata.csv (columns file_name, text, ...).")
    for column in ("file_name", "text"):
        if column not in rows.column_names:
            raise ValueError(f"The metadata of {folder} has no {column!r} column (it has {rows.column_names}).")
    return rows.map(lambda row: {"video": str(folder / row["file_name"])}, remove_columns=["file_name"])


def howto100m_rows(captions_file: str | Path, video_dir: str | Path, extension: str = ".mp4") -> datasets.Dataset:
    """
    Rows `video`, `start`, `end`, `text` from HowTo100M-style ASR captions: a JSON file
    `{video_id: {"start": [s, ...], "end": [e, ...], "text": [sentence, ...]}}`; video `video_id` is
    `<video_dir>/<video_id><extension>`. Empty sentences are dropped.
    """
    captions = json.loads(Path(captions_file).read_text())

    def generate():
        for video_id, segments in captions.items():
            for start, end, text in zip(segments["start"], segments["end"], segments["text"], strict=True):
                if str(text).strip():
                    yield {
                        "video": str(Path(video_dir) / f"{video_id}{extension}"),
                        "start": float(start),
                        "end": float(end),
                        "text": str(text).strip(),
                    }

    return datasets.Dataset.from_generator(generate)


def webvid_rows(csv_file: str | Path, video_dir: str | Path, extension: str = ".mp4") -> datasets.Dataset:
    """
    Rows `video`, `text` (whole videos) from a WebVid-style CSV with columns `videoid`, `name` (the caption) and
    `page_dir`; video `videoid` is `<video_dir>/<page_dir>/<videoid><extension>`, as the WebVid download tools lay
    them out.
    """
    rows = datasets.load_dataset("csv", data_files=str(csv_file), split="train")
    return rows.map(
        lambda row: {
            "video": str(Path(video_dir) / str(row["page_dir"]) / f"{row['videoid']}{extension}"),
            "text": str(row["name"]).strip(),
        },
        remove_columns=rows.column_names,
    )


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

    Items are dicts with `pixel_values_videos` (`[T, F, C, H, W]`), `clip_spans` (`[T, 2]`), `text` and `skipped`.
    When a row's video cannot be read, the next rows are tried in turn and the item is the first readable one;
    `skipped` holds the row's own error (`"<video>: <reason>"`). Batches therefore stay full, which keeps every
    process of a distributed run in step; 32 unreadable rows in a row raise.
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
        self.max_attempts = 32

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(min(len(self.rows), self.max_attempts)):
            row_index = (index + attempt) % len(self.rows)
            row = self.rows[row_index]
            try:
                clips = self._sample_clips(row, row_index)
            except (VideoDecodingError, FileNotFoundError, ValueError) as error:
                if attempt == 0:  # a row is counted when it is drawn itself, not each time it is passed over
                    skipped.append(f"{row['video']}: {error}")
                last_error = error
                continue
            return {
                "pixel_values_videos": clips["pixel_values_videos"][0],
                "clip_spans": clips["clip_spans"][0],
                "text": row["text"],
                "skipped": skipped,
            }
        raise VideoDecodingError(
            f"Rows {index} to {row_index} in a row could not be read (last: {row['video']}: {last_error})"
        )

    def _sample_clips(self, row, row_index: int):
        start, end = row.get("start"), row.get("end")
        span = None if start is None or end is None else (float(start), float(end))
        video = self.load_video(row["video"]) if self.load_video is not None else row["video"]
        return self.video_processor(
            [video],
            spans=[span],
            training=self.training,
            video_fps=self.video_fps,
            generator=np.random.default_rng([self.seed, self.epoch, row_index]),
            return_tensors="pt",
        )


class VideoTextCollator:
    """
    Stacks the clips of the items and tokenizes their texts with the processor's tokenizer.

    Returns a [`BatchFeature`] with `pixel_values_videos` (`[B, T, F, C, H, W]`), `clip_spans`, the text inputs, and
    `skipped`: the errors of the unreadable videos passed over for these items (not a model input; pop it before
    calling the model).
    """

    def __init__(self, processor: LocVTPProcessor):
        self.processor = processor

    def __call__(self, items: list[dict]) -> BatchFeature:
        batch = self.processor(text=[item["text"] for item in items], return_tensors="pt")
        batch["pixel_values_videos"] = torch.stack([item["pixel_values_videos"] for item in items])
        batch["clip_spans"] = torch.stack([item["clip_spans"] for item in items])
        batch["skipped"] = [error for item in items for error in item["skipped"]]
        return batch
