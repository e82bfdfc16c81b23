"""Pre-training data: readers of (video, span, text) rows in the usual layouts, and their clips sampled in DataLoader
workers and batched with the tokenizer. Rows without a caption are dropped and reported when read; a video that cannot
be read, and a streamed shard that cannot be read, are skipped and counted, never a crash mid-epoch."""

import io
import json
import logging
import math
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import torch
from transformers import BatchFeature

from .processing_locvtp import LocVTPProcessor
from .video_io import EncodedVideo, VideoDecodingError


if TYPE_CHECKING:  # `datasets` and `pyarrow` are imported by the readers that use them
    import datasets

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov")


def caption_text(value: Any) -> str | None:
    """A caption as training text: stripped, or `None` when it is missing (`None`, NaN), empty or blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).strip() or None


def _report_dropped(dropped: list[str], source: str) -> None:
    if dropped:
        logger.warning(
            f"{len(dropped)} row(s) of {source} have an empty or missing caption and are dropped, e.g. {dropped[:3]}"
        )


def _drop_rows_without_caption(
    rows: "datasets.Dataset", column: str, source: str
) -> tuple["datasets.Dataset", list[str]]:
    """`rows` without those whose `column` is missing, empty or blank, and the dropped rows as `"<source> row <i>"`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    captions = rows.data.column(column)
    if not pa.types.is_string(captions.type):
        captions = captions.cast(pa.string())  # a column of numbers, or of nulls only
    missing = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(captions), ""), True).to_numpy(zero_copy_only=False)
    dropped = [f"{source} row {index}" for index in np.flatnonzero(missing)]
    _report_dropped(dropped, source)
    return (rows.select(np.flatnonzero(~missing)) if dropped else rows), dropped


def videofolder_rows(
    folder: str | Path, return_dropped: bool = False
) -> "datasets.Dataset | tuple[datasets.Dataset, list[str]]":
    """
    Rows `video` (path), `text`, and `start` / `end` when the metadata has them, from a folder of videos with a
    `metadata.jsonl` or `metadata.csv` (`file_name` relative to the folder, `text`, optional `start`, `end`): the
    `videofolder` layout, where several rows may describe spans of the same video.

    Rows whose `text` is missing, empty or blank are dropped, with a warning naming them (`"<metadata file> row <i>"`,
    counting data rows from 0); `return_dropped=True` also returns that list.
    """
    import datasets

    folder = Path(folder)
    for name, builder in (("metadata.jsonl", "json"), ("metadata.csv", "csv")):
        if (folder / name).exists():
            metadata = folder / name
            rows = datasets.load_dataset(builder, data_files=str(metadata), split="train")
            break
    else:
        raise FileNotFoundError(f"{folder} has no metadata.jsonl or metadata.csv (columns file_name, text, ...).")
    for column in ("file_name", "text"):
        if column not in rows.column_names:
            raise ValueError(f"The metadata of {folder} has no {column!r} column (it has {rows.column_names}).")
    rows, dropped = _drop_rows_without_caption(rows, "text", str(metadata))
    rows = rows.map(lambda row: {"video": str(folder / row["file_name"])}, remove_columns=["file_name"])
    return (rows, dropped) if return_dropped else rows


def howto100m_rows(
    captions_file: str | Path, video_dir: str | Path, extension: str = ".mp4", return_dropped: bool = False
) -> "datasets.Dataset | tuple[datasets.Dataset, list[str]]":
    """
    Rows `video`, `start`, `end`, `text` from HowTo100M-style ASR captions: a JSON file
    `{video_id: {"start": [s, ...], "end": [e, ...], "text": [sentence, ...]}}`; video `video_id` is
    `<video_dir>/<video_id><extension>`.

    Captions that are missing (`null`), empty or blank are dropped, with a warning naming them
    (`"<file> video <video_id> caption <i>"`); `return_dropped=True` also returns that list.
    """
    import datasets

    captions = json.loads(Path(captions_file).read_text())

    def segments():
        for video_id, segment in captions.items():
            for index, (start, end, text) in enumerate(
                zip(segment["start"], segment["end"], segment["text"], strict=True)
            ):
                yield video_id, index, start, end, caption_text(text)

    dropped = [
        f"{captions_file} video {video_id} caption {index}"
        for video_id, index, _, _, text in segments()
        if text is None
    ]
    _report_dropped(dropped, str(captions_file))

    def generate():
        for video_id, _, start, end, text in segments():
            if text is not None:
                yield {
                    "video": str(Path(video_dir) / f"{video_id}{extension}"),
                    "start": float(start),
                    "end": float(end),
                    "text": text,
                }

    rows = datasets.Dataset.from_generator(generate)
    return (rows, dropped) if return_dropped else rows


def webvid_rows(
    csv_file: str | Path, video_dir: str | Path, extension: str = ".mp4", return_dropped: bool = False
) -> "datasets.Dataset | tuple[datasets.Dataset, list[str]]":
    """
    Rows `video`, `text` (whole videos) from a WebVid-style CSV with columns `videoid`, `name` (the caption) and
    `page_dir`; video `videoid` is `<video_dir>/<page_dir>/<videoid><extension>`, as the WebVid download tools lay
    them out.

    Rows whose `name` is missing, empty or blank are dropped, with a warning naming them (`"<file> row <i>"`, counting
    data rows from 0); `return_dropped=True` also returns that list.
    """
    import datasets

    rows = datasets.load_dataset("csv", data_files=str(csv_file), split="train")
    for column in ("videoid", "name", "page_dir"):
        if column not in rows.column_names:
            raise ValueError(f"{csv_file} has no {column!r} column (it has {rows.column_names}).")
    rows, dropped = _drop_rows_without_caption(rows, "name", str(csv_file))
    rows = rows.map(
        lambda row: {
            "video": str(Path(video_dir) / str(row["page_dir"]) / f"{row['videoid']}{extension}"),
            "text": caption_text(row["name"]),
        },
        remove_columns=rows.column_names,
    )
    return (rows, dropped) if return_dropped else rows


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
    When a row's video cannot be read (or the row has no caption: the readers above drop such rows, other rows may
    still hold one), the next rows are tried in turn and the item is the first usable one; `skipped` holds the row's
    own error (`"<video>: <reason>"`). Batches therefore stay full, which keeps every process of a distributed run in
    step; 32 unusable rows in a row raise.
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
                text = caption_text(row["text"])
                if text is None:
                    raise ValueError(f"row {row_index} has no caption (text {row['text']!r})")
                clips = self._sample_clips(row, row_index)
            except (VideoDecodingError, FileNotFoundError, ValueError) as error:
                if attempt == 0:  # a row is counted when it is drawn itself, not each time it is passed over
                    skipped.append(f"{row['video']}: {error}")
                last_error = error
                continue
            return {
                "pixel_values_videos": clips["pixel_values_videos"][0],
                "clip_spans": clips["clip_spans"][0],
                "text": text,
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


class ShardReadError(Exception):
    """A streamed shard, or the rest of it, cannot be read (a truncated, empty or corrupt file)."""


class StreamingVideoTextDataset(torch.utils.data.IterableDataset):
    """
    Pre-training pairs streamed from sharded files, for data sets larger than a disk: webdataset tar shards (sample
    `<key>.mp4` (or another video extension) with `<key>.json` holding `text` and optional `start` / `end`, or
    `<key>.txt` holding the text) or parquet files (columns `video`: the file's bytes, a `{"bytes", "path"}` struct or
    a path; `text`; optional `start` / `end`). Files may be local or remote (any `fsspec` URL, `hf://datasets/...`);
    each is read as a stream, once per epoch.

    Each epoch reshuffles the order of the shards (from `seed` and the epoch) and gives each process its own shards
    (`order[rank::world_size]`; with a number of shards that is not a multiple of `world_size`, every process reads
    every shard and keeps one sample in `world_size`), and each DataLoader worker its own shards among those (so there
    should be at least `world_size x num_workers` shards, a multiple of `world_size`); the iteration goes on epoch
    after epoch, so a training run stops after its number of steps. Videos are decoded from memory.

    Nothing in the data stops the stream: a sample whose video cannot be read, whose caption is missing, empty or
    blank, or whose `.json` is malformed is passed over and reported in the next item's `skipped`
    (`"<shard>/<key>.<ext>: <reason>"`, as in [`VideoTextPairDataset`]); a shard that cannot be read (truncated,
    empty, not a tar or parquet file) is passed over from the point where it breaks, after its readable samples, and
    reported in the next item's `skipped_shards` (`"<shard>: <reason>"`). 32 unusable samples in a row, or an epoch
    without any usable sample, raise.

    `state_dict()` / `load_state_dict()` give the position in the stream (epoch, shard, sample in the shard: plain
    integers) so that a `torchdata.stateful_dataloader.StatefulDataLoader` resumes where it stopped: no sample is
    repeated or skipped.

    Args:
        data_files (`str` or `list[str]`): shard files or glob patterns, all `.tar` or all `.parquet`.
        processor ([`LocVTPProcessor`]): its video processor samples the clips.
        rank (`int`), world_size (`int`): this process and the number of processes.
        training (`bool`): random clip offsets (training) or centred ones.
        seed (`int`): seed of the shard order and the clip offsets.

    Items are dicts with `pixel_values_videos` (`[T, F, C, H, W]`), `clip_spans` (`[T, 2]`), `text`, `skipped` and
    `skipped_shards`.
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
        from datasets.data_files import resolve_pattern

        patterns = [data_files] if isinstance(data_files, str) else list(data_files)
        self.files = sorted({file for pattern in patterns for file in resolve_pattern(pattern, base_path=".")})
        if not self.files:
            raise FileNotFoundError(f"No shard matches {patterns}.")
        suffixes = {Path(file.split("::")[0]).suffix for file in self.files}
        if suffixes not in ({".tar"}, {".parquet"}):
            raise ValueError(f"Shards must all be .tar (webdataset) or all .parquet files; got {sorted(suffixes)}.")
        self.format = "webdataset" if suffixes == {".tar"} else "parquet"
        self.video_processor = processor.video_processor
        self.rank, self.world_size = rank, world_size
        self.training = training
        self.seed = seed
        self.max_attempts = 32
        # the position in the stream: the next sample is sample `sample` of this worker's shard `shard` in `epoch`
        self.epoch, self.shard, self.sample = 0, 0, 0

    def _worker_shards(self, worker_id: int, num_workers: int) -> tuple[list[int], int, int]:
        """This epoch's shards of this process and worker (indices into `files`), and the samples it keeps of each:
        those whose index in the shard is `offset` modulo `step`."""
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.files)).tolist()
        if len(order) % self.world_size == 0:
            shards, step, offset = order[self.rank :: self.world_size], 1, 0
        else:
            shards, step, offset = order, self.world_size, self.rank
        return shards[worker_id::num_workers], step, offset

    def __iter__(self) -> Iterator[dict]:
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        skipped, skipped_shards, failures_in_a_row = [], [], 0
        while True:
            shards, step, offset = self._worker_shards(worker_id, num_workers)
            if not shards:
                return  # more workers than shards: the other workers stream the data
            whole_epoch, yielded = self.shard == 0 and self.sample == 0, False
            while self.shard < len(shards):
                file_index = shards[self.shard]
                samples = self._read_shard(self.files[file_index], start=self.sample)
                while True:
                    try:
                        sample = next(samples)
                    except StopIteration:
                        break
                    except ShardReadError as error:
                        skipped_shards.append(str(error))
                        break
                    sample_index, self.sample = self.sample, self.sample + 1
                    if sample_index % step != offset:
                        continue
                    rng = np.random.default_rng([self.seed, self.epoch, file_index, sample_index])
                    try:
                        video, text, span = self._unpack(sample, self.files[file_index], sample_index)
                        clips = self.video_processor(
                            [video], spans=[span], training=self.training, generator=rng, return_tensors="pt"
                        )
                    except (VideoDecodingError, FileNotFoundError, ValueError) as error:
                        skipped.append(str(error))
                        failures_in_a_row += 1
                        if failures_in_a_row >= self.max_attempts:
                            raise VideoDecodingError(
                                f"{failures_in_a_row} samples in a row could not be used (last: {skipped[-1]})"
                            ) from error
                        continue
                    failures_in_a_row, yielded = 0, True
                    yield {
                        "pixel_values_videos": clips["pixel_values_videos"][0],
                        "clip_spans": clips["clip_spans"][0],
                        "text": text,
                        "skipped": skipped,
                        "skipped_shards": skipped_shards,
                    }
                    skipped, skipped_shards = [], []
                self.shard, self.sample = self.shard + 1, 0
            if whole_epoch and not yielded:
                raise ValueError(
                    f"The shards of process {self.rank}, worker {worker_id} gave no usable sample in epoch "
                    f"{self.epoch}: {[self.files[index] for index in shards]}; skipped: "
                    f"{(skipped_shards + skipped)[:5]}"
                )
            self.epoch, self.shard, self.sample = self.epoch + 1, 0, 0

    def _read_shard(self, file: str, start: int) -> Iterator[dict]:
        """The samples of a shard from its `start`-th on, as dicts; a shard that breaks raises `ShardReadError`."""
        import pyarrow as pa

        read = self._tar_samples if self.format == "webdataset" else self._parquet_samples
        # bound before the first sample: a stream left open is closed at interpreter exit, after the modules' names
        # are cleared, and the except clause is evaluated then
        errors = (tarfile.TarError, pa.ArrowException, OSError, EOFError)
        try:
            yield from read(file, start)
        except errors as error:
            raise ShardReadError(f"{file}: {error}") from error

    @staticmethod
    def _tar_samples(file: str, start: int) -> Iterator[dict]:
        """The samples of a webdataset tar: `{"__key__": key, "<extension>": bytes, ...}` of consecutive members of
        the same key (the name up to the first dot); the members of the first `start` samples are not read."""
        sample, index, where = {}, 0, None
        errors = (tarfile.TarError, OSError, EOFError)  # bound before the first sample, as in `_read_shard`
        try:
            with fsspec.open(file, "rb") as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
                for member in tar:
                    where = f"in member {member.name}"
                    directory, _, name = member.name.rpartition("/")
                    stem, dot, extension = name.partition(".")
                    if member.isfile() and dot:
                        key = f"{directory}/{stem}" if directory else stem
                        if sample and sample["__key__"] != key:
                            if index >= start:
                                yield sample
                            sample, index = {}, index + 1
                        sample["__key__"] = key
                        if index >= start:
                            sample[extension.lower()] = tar.extractfile(member).read()
                    where = f"after member {member.name}"
                if sample and index >= start:
                    yield sample
                # tarfile ends quietly where a file cut short at a header ends: only the missing end-of-archive block
                # (read whole at the end of an intact file) tells
                if tar.fileobj.pos < tar.offset + tarfile.BLOCKSIZE:
                    raise tarfile.ReadError("the file ends without the end-of-archive marker: it was cut short")
        except errors as error:
            if where is None:
                raise tarfile.ReadError(f"not a readable tar file ({error})") from error
            raise tarfile.ReadError(f"unreadable {where} ({error})") from error

    @staticmethod
    def _parquet_samples(file: str, start: int) -> Iterator[dict]:
        """The rows of a parquet file as dicts; the row groups of the first `start` rows are not read."""
        import pyarrow.parquet as pq

        with fsspec.open(file, "rb") as stream:
            parquet = pq.ParquetFile(stream)
            for group in range(parquet.num_row_groups):
                num_rows = parquet.metadata.row_group(group).num_rows
                if start >= num_rows:
                    start -= num_rows
                    continue
                for batch in parquet.iter_batches(batch_size=16, row_groups=[group]):
                    rows = batch.to_pylist()
                    yield from rows[start:]
                    start = max(start - len(rows), 0)

    def _unpack(self, row: dict, file: str, index: int) -> tuple[Any, str, tuple[float, float] | None]:
        """The video (an [`EncodedVideo`] or a path), the text and the span of a webdataset or parquet sample."""
        if self.format == "webdataset":
            where = f"{file}/{row['__key__']}"
            extensions = [ext for ext in VIDEO_EXTENSIONS if row.get(ext) is not None]
            if not extensions:
                raise ValueError(f"Sample {where} has no video (one of {VIDEO_EXTENSIONS}).")
            video, name = row[extensions[0]], f"{where}.{extensions[0]}"
            metadata = {}
            if "json" in row:
                try:
                    metadata = json.loads(row["json"])
                except ValueError as error:  # malformed JSON, or not UTF-8
                    raise ValueError(f"{where}.json: malformed JSON ({error})") from error
                if not isinstance(metadata, dict):
                    raise ValueError(f"{where}.json: expected a JSON object, got {type(metadata).__name__}")
            text = metadata.get("text")
            if text is None and "txt" in row:
                text = row["txt"].decode("utf-8", errors="replace")
        else:
            video, metadata, text = row.get("video"), row, row.get("text")
            name = f"{file} row {index}"
        if isinstance(video, Mapping):  # datasets' Video struct
            if self.format == "parquet" and video.get("path"):
                name = f"{name} ({video['path']})"
            video = video.get("bytes") or video.get("path")
        text = caption_text(text)
        if text is None:
            raise ValueError(f"{name} has no caption (its text is missing, empty or blank)")
        if isinstance(video, bytes):
            video = EncodedVideo(video, name)
        try:
            start, end = (None if metadata.get(key) is None else float(metadata[key]) for key in ("start", "end"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name}: start / end must be numbers of seconds ({error})") from error
        return video, text, None if start is None or end is None else (start, end)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "shard": self.shard, "sample": self.sample}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"epoch", "shard", "sample"}:
            raise ValueError(
                f"The stream position {sorted(state)} was written by another version of StreamingVideoTextDataset; it "
                "expects epoch, shard and sample."
            )
        self.epoch, self.shard, self.sample = state["epoch"], state["shard"], state["sample"]


class VideoTextCollator:
    """
    Stacks the clips of the items and tokenizes their texts with the processor's tokenizer.

    Returns a [`BatchFeature`] with `pixel_values_videos` (`[B, T, F, C, H, W]`), `clip_spans`, the text inputs,
    `skipped`: the errors of the unusable samples passed over for these items, and for streamed items
    `skipped_shards`: the shards that could not be read (neither is a model input: pop them before calling the model).

    With `report_skipped=False` the batch holds model inputs only, and what was skipped is logged as a warning
    instead: the collator to give `transformers.Trainer` (`data_collator=VideoTextCollator(processor,
    report_skipped=False)`, with `remove_unused_columns=False` in its arguments, since the items are not model
    inputs yet).
    """

    def __init__(self, processor: LocVTPProcessor, report_skipped: bool = True):
        self.processor = processor
        self.report_skipped = report_skipped

    def __call__(self, items: list[dict]) -> BatchFeature:
        batch = self.processor(text=[item["text"] for item in items], return_tensors="pt")
        batch["pixel_values_videos"] = torch.stack([item["pixel_values_videos"] for item in items])
        batch["clip_spans"] = torch.stack([item["clip_spans"] for item in items])
        skipped = {"skipped": [error for item in items for error in item["skipped"]]}
        if "skipped_shards" in items[0]:
            skipped["skipped_shards"] = [error for item in items for error in item["skipped_shards"]]
        if self.report_skipped:
            batch.update(skipped)
        else:
            for name, errors in skipped.items():
                for error in errors:
                    logger.warning(f"{name.replace('_', ' ')}: {error}")
        return batch
