"""Training shards of small clips: each (video, span, text) row's span decoded once, resized, resampled at a fixed frame
rate and re-encoded as a short H.264 video in webdataset tar shards, so that a large run decodes a few small frames per
sample instead of seeking in the source videos. [`StreamingVideoTextDataset`] reads the shards as any other webdataset
shards: each stored clip is a whole sample, at the frame rate it was written at.

A shard holds the samples of a fixed range of rows (shard `i`: rows `i * samples_per_shard` to `(i + 1) *
samples_per_shard - 1`; a row whose video cannot be read is left out and reported), so a write that was interrupted
resumes: a complete shard is kept, and a shard cut short is written again."""

import csv
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .data import VIDEO_EXTENSIONS, StreamingVideoTextDataset, _report_dropped, caption_text
from .video_io import EncodedVideo, VideoDecodingError, probe_video, read_frames_at
from .video_processing_locvtp import LocVTPVideoProcessor


logger = logging.getLogger(__name__)

SHARD_NAME = "shard-{:05d}.tar"
# A shard is written under this name and renamed when it is complete: a file under the final name is always whole.
PARTIAL_SUFFIX = ".partial"


@dataclass
class ShardWriteReport:
    """
    What [`write_video_shards`] did.

    Attributes:
        shards (`list[Path]`): Every shard of the rows, in order (written now or kept from an earlier run).
        written (`list[Path]`): The shards written by this call.
        kept (`list[Path]`): The complete shards of an earlier run, left as they were.
        failed (`list[str]`): The rows left out of the shards written now, as `"<video>: <reason>"`.
    """

    shards: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def csv_rows(csv_file: str | Path) -> list[dict[str, Any]]:
    """
    Rows `video`, `text`, `start`, `end` of a CSV file with a header naming those columns (`start` and `end`, in
    seconds, are optional; an empty cell means the whole video). A relative `video` path is taken from the CSV file's
    folder. Rows whose `text` is missing, empty or blank are dropped, with a warning naming them (`"<file> row <i>"`,
    counting data rows from 0).
    """
    csv_file = Path(csv_file)
    with csv_file.open(newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {"video", "text"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_file} has no {sorted(missing)} column(s) (it has {reader.fieldnames}).")
        rows, dropped = [], []
        for index, row in enumerate(reader):
            text = caption_text(row["text"])
            if text is None:
                dropped.append(f"{csv_file} row {index}")
                continue
            try:
                start, end = (float(row[key]) if (row.get(key) or "").strip() else None for key in ("start", "end"))
            except ValueError as error:
                raise ValueError(f"{csv_file} row {index}: start / end must be numbers of seconds ({error})") from error
            rows.append({"video": str(csv_file.parent / row["video"]), "text": text, "start": start, "end": end})
    _report_dropped(dropped, str(csv_file))
    return rows


def write_video_shards(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | Path,
    short_side: int,
    fps: float = 8.0,
    samples_per_shard: int = 1000,
    lossless: bool = False,
    crf: int = 18,
    keyframe_interval: int = 1,
    num_workers: int = 0,
) -> ShardWriteReport:
    """
    Write the rows as webdataset shards `<output_dir>/shard-00000.tar`, ...: sample `<key>` (the row's index, 9
    digits) is `<key>.mp4`, the row's span (the whole video without `start` / `end`) resized and resampled at `fps`,
    and `<key>.json` with `text`, `source` (the video), `source_start` / `source_end` (the span in the video, seconds),
    `fps` and `num_frames`.

    Frame `k` of a stored clip is the source frame shown at `source_start + (k + 0.5) / fps` (read with
    [`read_frames_at`], resized by FFmpeg's scaler); a span of `d` seconds gives `max(1, round(d * fps))` frames.
    Frame `k` is presented at `k / fps`, so the clip lasts `num_frames / fps` seconds.

    Shards that exist under their final name are kept (they were completed by an earlier run with the same rows and
    `samples_per_shard`); the others are written under a temporary name, renamed when complete.

    Args:
        rows: mappings with `video` (a file path), `text` and optional `start` / `end` in seconds, with `len` and
            indexing, e.g. [`videofolder_rows`], [`csv_rows`].
        output_dir (`str` or `Path`): folder of the shards (created).
        short_side (`int`): pixels of the shorter side of the stored frames (aspect ratio kept), e.g. the model's
            image size.
        fps (`float`, *optional*, defaults to 8.0): frame rate of the stored clips; at least the frames a sample
            needs over its span (e.g. 8 clips x 4 frames over 4-second spans: 8 fps) to avoid repeated frames.
        samples_per_shard (`int`, *optional*, defaults to 1000): rows per shard.
        lossless (`bool`, *optional*, defaults to `False`): store the RGB frames exactly (H.264 RGB, quantizer 0,
            several times the size) instead of H.264 4:2:0 at quality `crf` (whose sizes must be even: an odd width
            or height loses its last column or row).
        crf (`int`, *optional*, defaults to 18): x264's constant rate factor when not `lossless` (0-51, lower is
            better).
        keyframe_interval (`int`, *optional*, defaults to 1): frames from one keyframe to the next. 1 (every frame a
            keyframe) lets a sample decode only the frames it takes, at about 2.5 times the size of x264's default
            (250): worth it when a sample takes few of a clip's frames (e.g. 32 of a 30-second clip at 8 fps).
        num_workers (`int`, *optional*, defaults to 0): processes that write shards in parallel (0: this process).

    Returns:
        [`ShardWriteReport`]

    Raises:
        `ValueError`: a bad argument, or a row whose `video` does not end in a video extension.
    """
    if not isinstance(short_side, int) or short_side < 2:
        raise ValueError(f"short_side must be a number of pixels, at least 2, got {short_side!r}.")
    if not 0 < fps < float("inf"):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}.")
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}.")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in 0-51, got {crf}.")
    if keyframe_interval < 1:
        raise ValueError(f"keyframe_interval must be at least 1 frame, got {keyframe_interval}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "short_side": short_side, "fps": fps, "lossless": lossless, "crf": crf, "keyframe_interval": keyframe_interval
    }
    report = ShardWriteReport()
    jobs = []
    for shard_index, begin in enumerate(range(0, len(rows), samples_per_shard)):
        path = output_dir / SHARD_NAME.format(shard_index)
        report.shards.append(path)
        if path.exists():
            report.kept.append(path)
            continue
        indices = range(begin, min(begin + samples_per_shard, len(rows)))
        jobs.append((path, [(index, dict(rows[index])) for index in indices]))
    paths, shard_rows = [path for path, _ in jobs], [job_rows for _, job_rows in jobs]
    if num_workers > 0:
        with ProcessPoolExecutor(num_workers) as pool:
            results = list(pool.map(_write_shard, paths, shard_rows, [options] * len(jobs)))
    else:
        results = [_write_shard(path, job_rows, options) for path, job_rows in jobs]
    for path, failed in zip(paths, results, strict=True):
        report.written.append(path)
        report.failed.extend(failed)
    for error in report.failed:
        logger.warning(f"Left out of the shards: {error}")
    return report


def _write_shard(path: Path, rows: list[tuple[int, dict]], options: dict) -> list[str]:
    """Write the samples of `rows` (`(index, row)` pairs) to the shard `path`; returns the rows that failed."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    failed = []
    with tarfile.open(partial, "w") as tar:
        for index, row in rows:
            try:
                members = _encode_sample(row, **options)
            except (VideoDecodingError, FileNotFoundError, ValueError) as error:
                failed.append(f"{row['video']}: {error}")
                continue
            for extension, data in members.items():
                member = tarfile.TarInfo(f"{index:09d}.{extension}")
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    os.replace(partial, path)
    return failed


def _encode_sample(
    row: Mapping[str, Any], short_side: int, fps: float, lossless: bool, crf: int, keyframe_interval: int
) -> dict[str, bytes]:
    """The `mp4` and `json` members of one row's sample."""
    video = Path(row["video"])
    if video.suffix.lstrip(".").lower() not in VIDEO_EXTENSIONS:
        raise ValueError(f"{video} does not end in a video extension {VIDEO_EXTENSIONS}")
    text = caption_text(row["text"])
    if text is None:
        raise ValueError(f"the caption is missing, empty or blank ({row['text']!r})")
    info = probe_video(video)
    span = None if row.get("start") is None or row.get("end") is None else (row["start"], row["end"])
    start, end = LocVTPVideoProcessor._check_span(str(video), span, info.duration, info.fps)
    num_frames = max(1, round((end - start) * fps))
    frames, _ = read_frames_at(video, start + (np.arange(num_frames) + 0.5) / fps, short_side=short_side)
    metadata = {
        "text": text, "source": str(video), "source_start": start, "source_end": end, "fps": fps,
        "num_frames": num_frames,
    }
    clip = encode_clip(frames, fps, lossless, crf, keyframe_interval)
    return {"mp4": clip, "json": json.dumps(metadata).encode()}


def encode_clip(
    frames: np.ndarray, fps: float, lossless: bool = False, crf: int = 18, keyframe_interval: int = 1
) -> bytes:
    """
    Encode frames as an H.264 mp4 file in memory.

    Args:
        frames (`np.ndarray`): uint8 `[N, H, W, 3]` RGB frames; frame `k` is presented at `k / fps`.
        fps (`float`): frame rate.
        lossless (`bool`, *optional*, defaults to `False`): exact RGB (libx264rgb at quantizer 0) instead of YUV 4:2:0
            at quality `crf`, which needs even sizes: an odd width or height loses its last column or row.
        crf (`int`, *optional*, defaults to 18): x264's constant rate factor when not `lossless`.
        keyframe_interval (`int`, *optional*, defaults to 1): frames from one keyframe to the next.

    Returns:
        `bytes`: the mp4 file.
    """
    import av

    if not lossless:
        frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        codec = "libx264rgb" if lossless else "libx264"
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "rgb24" if lossless else "yuv420p"
        stream.options = {"g": str(keyframe_interval), **({"qp": "0"} if lossless else {"crf": str(crf)})}
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def read_video_shard(file: str | Path) -> Iterator[dict[str, Any]]:
    """
    The samples of a shard written by [`write_video_shards`], decoded: dicts with `key`, `frames` (uint8
    `[num_frames, H, W, 3]`) and the fields of the sample's JSON (`text`, `source`, `source_start`, `source_end`,
    `fps`, `num_frames`). For training, give the shards to [`StreamingVideoTextDataset`] instead.
    """
    for sample in StreamingVideoTextDataset._tar_samples(str(file), start=0):
        metadata = json.loads(sample["json"])
        video = EncodedVideo(sample["mp4"], f"{file}/{sample['__key__']}.mp4")
        frames, _ = read_frames_at(video, (np.arange(metadata["num_frames"]) + 0.5) / metadata["fps"])
        yield {"key": sample["__key__"], "frames": frames, **metadata}


__all__ = ["ShardWriteReport", "csv_rows", "encode_clip", "read_video_shard", "write_video_shards"]
