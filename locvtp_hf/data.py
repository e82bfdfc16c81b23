"""Pre-training data: readers of (video, span, text) rows in the usual layouts, and their clips sampled in DataLoader
workers and batched with the tokenizer. A video that cannot be read is skipped and counted, never a crash
mid-epoch."""

import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from datasets.data_files import resolve_pattern
from datasets.distributed import split_dataset_by_node
from transformers import BatchFeature

from .processing_locvtp import LocVTPProcessor
from .video_io import EncodedVideo, VideoDecodingError


VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov")


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


def write_webdataset_shards(
    rows: Iterable[Mapping[str, Any]], output_dir: str | Path, samples_per_shard: int = 1000
) -> list[Path]:
    """
    Write (video, text, span) rows as webdataset tar shards `<output_dir>/shard-00000.tar`, ...: sample `<key>` is the
    video file's bytes as `<key>.<ext>` and `<key>.json` with `text` and, when the row has them, `start` / `end`.

    Args:
        rows: mappings with `video` (a file path), `text` and optional `start` / `end`, e.g. [`videofolder_rows`].
        output_dir: folder of the shards (created).
        samples_per_shard: samples per tar file.

    Returns:
        The shard paths, in order.
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    shards, tar = [], None
    for index, row in enumerate(rows):
        if index % samples_per_shard == 0:
            if tar is not None:
                tar.close()
            shards.append(output_dir / f"shard-{len(shards):05d}.tar")
            tar = tarfile.open(shards[-1], "w")
        video = Path(row["video"])
        extension = video.suffix.lstrip(".").lower()
        if extension not in VIDEO_EXTENSIONS:
            raise ValueError(f"Row {index}: {video} does not end in a video extension {VIDEO_EXTENSIONS}.")
        metadata = {"text": row["text"]}
        metadata.update({key: float(row[key]) for key in ("start", "end") if row.get(key) is not None})
        members = {f"{index:09d}.{extension}": video.read_bytes(), f"{index:09d}.json": json.dumps(metadata).encode()}
        for name, data in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    if tar is not None:
        tar.close()
    return shards


class StreamingVideoTextDataset(torch.utils.data.IterableDataset):
    """
    Pre-training pairs streamed from sharded files with `datasets` (`streaming=True`), for data sets larger than a
    disk: webdataset tar shards (sample `<key>.mp4` (or another video extension) with `<key>.json` holding `text` and
    optional `start` / `end`, or `<key>.txt` holding the text) or parquet files (columns `video`: the file's bytes,
    a `{"bytes", "path"}` struct or a path; `text`; optional `start` / `end`). Files may be local or remote (any
    `fsspec` URL, `hf://datasets/...`).

    Each epoch reshuffles the order of the shards (from `seed` and the epoch), gives each process its own shards with
    `split_dataset_by_node` and each DataLoader worker its own shards (so there should be at least
    `world_size x num_workers` shards, a multiple of `world_size`), and streams them in order; the iteration goes on
    epoch after epoch, so a training run stops after its number of steps. Videos are decoded from memory; an
    unreadable one is passed over and reported in the next item's `skipped`, as in [`VideoTextPairDataset`].

    `state_dict()` / `load_state_dict()` give the position in the stream (epoch, datasets' shard and example
    position) so that a `torchdata.stateful_dataloader.StatefulDataLoader` resumes where it stopped: no sample is
    repeated or skipped.

    Args:
        data_files (`str` or `list[str]`): shard files or glob patterns, all `.tar` or all `.parquet`.
        processor ([`LocVTPProcessor`]): its video processor samples the clips.
        rank (`int`), world_size (`int`): this process and the number of processes.
        training (`bool`): random clip offsets (training) or centred ones.
        seed (`int`): seed of the shard order and the clip offsets.

    Items are dicts with `pixel_values_videos` (`[T, F, C, H, W]`), `clip_spans` (`[T, 2]`), `text` and `skipped`.
    """

    def __init__(
        self,
        data_files: str | list[str],
        processor: LocVTPProcessor,
        rank: int = 0,
        world_size: int = 1,
        training: bool = True,
        seed: int = 0,
    ):
        patterns = [data_files] if isinstance(data_files, str) else list(data_files)
        self.files = sorted({file for pattern in patterns for file in resolve_pattern(pattern, base_path=".")})
        if not self.files:
            raise FileNotFoundError(f"No shard matches {patterns}.")
        suffixes = {Path(file.split("::")[0]).suffix for file in self.files}
        if suffixes not in ({".tar"}, {".parquet"}):
            raise ValueError(f"Shards must all be .tar (webdataset) or all .parquet files; got {sorted(suffixes)}.")
        self.builder = "webdataset" if suffixes == {".tar"} else "parquet"
        self.video_processor = processor.video_processor
        self.rank, self.world_size = rank, world_size
        self.training = training
        self.seed = seed
        self.max_attempts = 32
        self.epoch, self.position = 0, 0
        self._rows = None
        self._rows_state = None

    def _epoch_rows(self) -> datasets.IterableDataset:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.files))
        rows = datasets.load_dataset(
            self.builder, data_files=[self.files[i] for i in order], split="train", streaming=True
        )
        # decode=False: the videos are decoded by the video processor, not by datasets (which would need torchcodec)
        for name, feature in rows.features.items():
            if isinstance(feature, datasets.Video):
                rows = rows.cast_column(name, datasets.Video(decode=False))
        return split_dataset_by_node(rows, rank=self.rank, world_size=self.world_size)

    def __iter__(self) -> Iterator[dict]:
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker is not None else 0
        skipped, failures_in_a_row = [], 0
        while True:
            self._rows = self._epoch_rows()
            if worker_id >= self._rows.n_shards:
                return  # datasets gives this worker no shard: the other workers stream the data
            resumed = self._rows_state is not None
            if resumed:
                self._rows.load_state_dict(self._rows_state)
                self._rows_state = None
            for row in self._rows:
                self.position += 1
                rng = np.random.default_rng([self.seed, self.rank, worker_id, self.epoch, self.position])
                try:
                    video, text, span = self._unpack(row)
                    clips = self.video_processor(
                        [video], spans=[span], training=self.training, generator=rng, return_tensors="pt"
                    )
                except (VideoDecodingError, ValueError) as error:
                    skipped.append(str(error))
                    failures_in_a_row += 1
                    if failures_in_a_row >= self.max_attempts:
                        raise VideoDecodingError(
                            f"{failures_in_a_row} videos in a row could not be read (last: {skipped[-1]})"
                        ) from error
                    continue
                failures_in_a_row = 0
                yield {
                    "pixel_values_videos": clips["pixel_values_videos"][0],
                    "clip_spans": clips["clip_spans"][0],
                    "text": text,
                    "skipped": skipped,
                }
                skipped = []
            if self.position == 0 and not resumed:
                raise ValueError(f"The shards of process {self.rank}, worker {worker_id} hold no sample: {self.files}")
            self.epoch, self.position, self._rows = self.epoch + 1, 0, None

    def _unpack(self, row: Mapping[str, Any]) -> tuple[Any, str, tuple[float, float] | None]:
        """The video (an [`EncodedVideo`] or a path), the text and the span of a webdataset or parquet row."""
        if self.builder == "webdataset":
            where = f"{Path(row['__url__']).name}/{row['__key__']}"
            extensions = [ext for ext in VIDEO_EXTENSIONS if row.get(ext) is not None]
            if not extensions:
                raise ValueError(f"Sample {where} has no video (one of {VIDEO_EXTENSIONS}).")
            video, metadata = row[extensions[0]], row.get("json") or {}
            text = metadata.get("text", row.get("txt"))
            name = f"{where}.{extensions[0]}"
        else:
            video, metadata, text = row["video"], row, row.get("text")
            name = f"a parquet row ({self.position} in this stream)"
        if isinstance(video, Mapping):  # datasets' Video struct
            if self.builder == "parquet" and video.get("path"):
                name = video["path"]
            video = video.get("bytes") or video.get("path")
        if isinstance(video, bytes):
            video = EncodedVideo(video, name)
        if not isinstance(text, str):
            raise ValueError(f"{name} has no text (a 'text' in its json, or a .txt)")
        start, end = metadata.get("start"), metadata.get("end")
        return video, text, None if start is None or end is None else (float(start), float(end))

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "rows": self._rows.state_dict() if self._rows is not None else self._rows_state,
        }

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self._rows_state = state["epoch"], state["position"], state["rows"]
        self._rows = None


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
