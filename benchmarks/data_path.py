"""Clips decoded per second per DataLoader worker from real video files, before and after the decoding rework and from
training shards, against what a training step consumes.

    python benchmarks/data_path.py [--config tiny|small|default] [--num_videos 32] [--real_videos DIR]
        [--paths before after resized shards] [--num_workers 1 2] [--batch_size 32] [--batches 4] [--shard_fps 8]
        [--train_samples_per_second S] [--gpu_samples_per_second 25.2] [--device auto] [--quick]

The videos: `--num_videos` videos of the built-in synthetic world exported as H.264 mp4 files (64 px, 4 fps, 16-40
s; their pre-training pairs are spans of a few seconds), and every video file in `--real_videos` (default:
`$LOCVTP_REAL_DATA/videos` when set), each read as a whole. They go through the pre-training data path in a
`DataLoader` with each number of `--num_workers`, by each of `--paths`:

- `before`: `VideoTextPairDataset` (decoding of the sampled frames, resize, crop, normalisation, at random clip
  offsets) with the decoding of the previous release: every frame decoded from the keyframe before the earliest
  sampled time to the latest (`locvtp_hf.video_io._read_frames_sequential`, the path that is left for streams
  without packet timestamps), FFmpeg's automatic thread count in every worker;
- `after`: the same dataset with today's `read_frames_at`: one seek per stretch of sampled times, only the packets the
  sampled frames need decoded, each worker's share of the cores as decoder threads; frames converted to RGB at full
  size, then resized (the processor's default);
- `resized`: as `after`, with the processor's `resize_while_decoding=True`: FFmpeg shrinks each frame to the
  configuration's frame size while converting it (videos larger than that size only);
- `shards`: `StreamingVideoTextDataset` over webdataset shards that `locvtp_hf.video_shards.write_video_shards`
  wrote first (one video per shard, at the configuration's frame size and `--shard_fps`; the time it took is
  printed), i.e. what `examples/write_video_shards.py` prepares for a large run.

`VideoTextCollator` stacks the clips and tokenizes the texts. Each worker's first batch (process start-up) is not
timed; then `--batches` batches per worker are.

The training step's consumption is `samples/s x num_clips` of the same configuration and batch size, measured with
`benchmarks/train_step.py`'s step on `--device`, or given with `--train_samples_per_second` (e.g. a GPU's figure from
`train_step.py`). "workers to keep up" is how many workers, at the measured rate each, feed one training process.

A second table (unless `--gpu_samples_per_second 0` or `--quick`) measures the paths with the default (paper-size)
configuration's sampling, 8 clips x 4 frames at 224 px, on the real videos (the synthetic ones when there are none),
in batches of 8 with one worker, against the default configuration's step on one H100 (`--gpu_samples_per_second`:
batch 8 in 0.317 s, `benchmarks/RESULTS_H100.md`).
"""

import argparse
import copy
import math
import os
import tempfile
import time
from pathlib import Path

import datasets
import torch
from benchmark_utils import Table, machine_line, pick_device, pick_precision
from train_step import CONFIGS, measure_train_step
from transformers import BertTokenizer

from locvtp_hf import LocVTPConfig, LocVTPProcessor, LocVTPVideoProcessor, video_io
from locvtp_hf.data import (
    VIDEO_EXTENSIONS,
    StreamingVideoTextDataset,
    VideoTextCollator,
    VideoTextPairDataset,
    videofolder_rows,
)
from locvtp_hf.synthetic import SyntheticWorld
from locvtp_hf.video_shards import write_video_shards


PATHS = ("before", "after", "resized", "shards")
COLUMNS = [
    "source", "path", "videos", "workers", "clips / s", "clips / s per worker", "training consumes clips / s",
    "workers to keep up", "skipped videos",
]
# The default configuration's training step on one H100 (benchmarks/RESULTS_H100.md): batch 8 in 0.317 s.
H100_DEFAULT_SAMPLES_PER_SECOND = 8 / 0.317
DEFAULT_CONFIG_BATCH_SIZE = 8
DEFAULT_CONFIG_BATCHES = 3


def make_processor(config: LocVTPConfig, texts: list[str]) -> LocVTPProcessor:
    """The configuration's clip sampling and frame size, and a word-level tokenizer over `texts`."""
    height, width = config.image_size
    video_processor = LocVTPVideoProcessor(
        num_clips=config.num_clips,
        frames_per_clip=config.frames_per_clip,
        size={"shortest_edge": min(height, width)},
        crop_size={"height": height, "width": width},
    )
    words = sorted({word for text in texts for word in text.lower().split()})
    tokenizer = BertTokenizer(
        vocab={token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    )
    return LocVTPProcessor(video_processor=video_processor, tokenizer=tokenizer)


def sequential_decoding(path, times, short_side=None):
    """The decoding of the previous release, in place of `read_frames_at`'s PyAV path (the `before` rows)."""
    return video_io._read_frames_sequential(path, times)


def use_sequential_decoding(worker_id: int | None = None) -> None:
    video_io._read_frames_pyav = sequential_decoding


def clips_per_second(
    dataset, processor: LocVTPProcessor, num_workers: int, batch_size: int, batches: int, before: bool
) -> tuple[float, int]:
    """`(clips decoded per second, videos skipped)` of a `DataLoader` over `dataset` (map-style: sampled with
    replacement; iterable: streamed) with `num_workers` workers (0: in this process), after each worker's first
    batch; `before`: with the previous release's decoding."""
    workers = max(num_workers, 1)
    sampler = None
    if not isinstance(dataset, torch.utils.data.IterableDataset):
        sampler = torch.utils.data.RandomSampler(
            dataset, replacement=True, num_samples=batch_size * workers * (batches + 1),
            generator=torch.Generator().manual_seed(0),
        )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        collate_fn=VideoTextCollator(processor), worker_init_fn=use_sequential_decoding if before else None,
    )
    current = video_io._read_frames_pyav
    if before and num_workers == 0:
        use_sequential_decoding()
    try:
        iterator = iter(loader)
        skipped = 0
        for _ in range(workers):  # each worker's first batch: process start-up
            skipped += len(next(iterator)["skipped"])
        clips = 0
        start = time.perf_counter()
        for _ in range(workers * batches):
            batch = next(iterator)
            clips += batch["pixel_values_videos"].shape[0] * batch["pixel_values_videos"].shape[1]
            skipped += len(batch["skipped"])
        return clips / (time.perf_counter() - start), skipped
    finally:
        video_io._read_frames_pyav = current


def measure_paths(
    table: Table, sources: dict, processor: LocVTPProcessor, config: LocVTPConfig, paths: list[str],
    num_workers: list[int], batch_size: int, batches: int, shard_fps: float, consumed: float, folder: str,
) -> None:
    """Add a row to `table` for each source, path and number of workers."""
    short_side = min(config.image_size)
    for index, (source, (rows, count)) in enumerate(sources.items()):
        shard_files = None
        if "shards" in paths:
            shard_dir = Path(folder) / f"shards-{short_side}px-{index}"
            start = time.perf_counter()
            report = write_video_shards(rows, shard_dir, short_side=short_side, fps=shard_fps, samples_per_shard=1)
            seconds = time.perf_counter() - start
            shard_files = [str(path) for path in report.shards if path.exists()]
            size = sum(os.path.getsize(path) for path in shard_files)
            table.notes.append(
                f"Shards of {source}: {len(rows)} rows written in {seconds:.3g} s by one process "
                f"({len(rows) / seconds:.3g} rows/s), {short_side} px short side, {shard_fps:g} fps, "
                f"{size / 2**20:.3g} MiB; {len(report.failed)} unreadable video(s) left out."
            )
        for path in paths:
            path_processor = processor
            if path == "resized":
                path_processor = copy.deepcopy(processor)
                path_processor.video_processor.resize_while_decoding = True
            for workers in num_workers:
                if path == "shards":
                    dataset = StreamingVideoTextDataset(shard_files, path_processor, training=True)
                else:
                    dataset = VideoTextPairDataset(rows, path_processor, training=True)
                rate, skipped = clips_per_second(
                    dataset, path_processor, workers, batch_size, batches, path == "before"
                )
                per_worker = rate / max(workers, 1)
                table.rows.append({
                    "source": source,
                    "path": path,
                    "videos": count,
                    "workers": workers if workers else "0 (main process)",
                    "clips / s": rate,
                    "clips / s per worker": per_worker,
                    "training consumes clips / s": consumed,
                    "workers to keep up": math.ceil(consumed / per_worker),
                    "skipped videos": skipped,
                })
                print(f"{source}, {path}, {workers} workers: {rate:.3g} clips/s", flush=True)


def main(argv: list[str] | None = None) -> list[Table]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=list(CONFIGS), default="small",
                        help="clip sampling, frame size and training step of this configuration")
    parser.add_argument("--num_videos", type=int, default=32, help="synthetic-world videos to export (0: none)")
    parser.add_argument("--real_videos", help="a folder of video files (default: $LOCVTP_REAL_DATA/videos if set)")
    parser.add_argument("--paths", nargs="+", choices=PATHS,
                        help="decoding paths to measure (default: all; with --quick: after)")
    parser.add_argument("--num_workers", type=int, nargs="+", help="DataLoader workers to try (default: 1 2)")
    parser.add_argument("--batch_size", type=int, default=32, help="samples per batch (and per training step)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per worker")
    parser.add_argument("--shard_fps", type=float, default=8.0, help="frame rate of the clips in the shards")
    parser.add_argument("--train_samples_per_second", type=float,
                        help="the training step's samples/s (default: measured here on --device)")
    parser.add_argument("--gpu_samples_per_second", type=float, default=H100_DEFAULT_SAMPLES_PER_SECOND,
                        help="the default configuration's training step's samples/s on a GPU, for the second table "
                        "(default: one H100's; 0: no second table)")
    parser.add_argument("--device", default="auto", help="where the training step is measured: auto, cpu, cuda")
    parser.add_argument("--quick", action="store_true",
                        help="a check that the script works: 2 synthetic videos, batches of 4, 1 worker and the after "
                        "and resized paths only (unless --num_workers / --paths), no second table")
    args = parser.parse_args(argv)
    if args.quick:
        num_videos, num_workers, batch_size, batches = min(args.num_videos, 2), args.num_workers or [1], 4, 1
        paths, gpu_samples_per_second = args.paths or ["after", "resized"], 0
    else:
        num_videos, batch_size, batches = args.num_videos, args.batch_size, args.batches
        num_workers = args.num_workers or [1, 2]
        paths, gpu_samples_per_second = args.paths or list(PATHS), args.gpu_samples_per_second
    real_folder = args.real_videos
    if real_folder is None and os.environ.get("LOCVTP_REAL_DATA") and not args.quick:
        real_folder = str(Path(os.environ["LOCVTP_REAL_DATA"]) / "videos")
    for name, value in (("--batch_size", batch_size), ("--batches", batches)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if args.train_samples_per_second is not None and args.train_samples_per_second <= 0:
        parser.error(f"--train_samples_per_second must be positive, got {args.train_samples_per_second}")
    if gpu_samples_per_second < 0 or not args.shard_fps > 0:
        parser.error("--gpu_samples_per_second cannot be negative and --shard_fps must be positive")
    if min(num_workers) < 0 or num_videos < 0:
        parser.error("--num_workers and --num_videos cannot be negative")
    real_files = []
    if real_folder is not None:
        if not Path(real_folder).is_dir():
            parser.error(f"--real_videos {real_folder} is not a folder")
        real_files = sorted(
            path for path in Path(real_folder).iterdir() if path.suffix[1:].lower() in VIDEO_EXTENSIONS
        )
        if not real_files:
            parser.error(f"--real_videos {real_folder} holds no video file ({', '.join(VIDEO_EXTENSIONS)})")
    if not num_videos and not real_files:
        parser.error("no videos: give --num_videos above 0 or --real_videos")
    device = pick_device(args.device)
    print(machine_line(device), flush=True)
    datasets.disable_progress_bars()

    config = LocVTPConfig(**CONFIGS[args.config])
    if args.train_samples_per_second is not None:
        samples_per_second, step_source = args.train_samples_per_second, "given with --train_samples_per_second"
    else:
        precision = pick_precision("auto", device)
        row = measure_train_step(args.config, batch_size, device, precision, steps=1 if args.quick else 3,
                                 text_length=32)
        if "samples / s" not in row:
            raise RuntimeError(
                f"The {args.config} training step ran out of memory at batch {batch_size} on {device}: give its "
                "rate with --train_samples_per_second or lower --batch_size."
            )
        samples_per_second = row["samples / s"]
        step_source = f"measured on {device.type} ({precision}, batch {batch_size})"

    tables = []
    with tempfile.TemporaryDirectory() as folder:
        sources = {}
        if num_videos:
            world = SyntheticWorld(seed=0, num_train=num_videos, num_validation=0, num_test=0)
            rows = videofolder_rows(world.export(folder, "train"))
            sources[f"synthetic mp4 ({world.size} px, {world.fps:g} fps, spans)"] = (rows, num_videos)
        if real_files:
            rows = [{"video": str(path), "text": "a real video", "start": None, "end": None} for path in real_files]
            sources[f"real ({real_folder}, whole videos)"] = (rows, len(real_files))
        texts = [text for rows, _ in sources.values() for text in (row["text"] for row in rows)]
        timing_note = f"Each worker's first batch is not timed; then {batches} batches per worker."

        processor = make_processor(config, texts)
        height, width = config.image_size
        table = Table(
            title=f"Data path: clips of {config.frames_per_clip} frames at {height}x{width} px decoded per second "
            f"({args.config} configuration, {config.num_clips} clips per sample, batches of {batch_size})",
            columns=COLUMNS,
            notes=[f"Training consumes: {samples_per_second:.3g} samples/s x {config.num_clips} clips, {step_source}. "
                   + timing_note],
        )
        measure_paths(table, sources, processor, config, paths, num_workers, batch_size, batches, args.shard_fps,
                      samples_per_second * config.num_clips, folder)
        tables.append(table)

        if gpu_samples_per_second:
            gpu_config = LocVTPConfig(**CONFIGS["default"])
            gpu_processor = make_processor(gpu_config, texts)
            gpu_sources = {name: source for name, source in sources.items() if name.startswith("real")} or sources
            height, width = gpu_config.image_size
            gpu_table = Table(
                title=f"Data path against the default configuration's GPU step: clips of {gpu_config.frames_per_clip} "
                f"frames at {height}x{width} px ({gpu_config.num_clips} clips per sample, batches of "
                f"{DEFAULT_CONFIG_BATCH_SIZE})",
                columns=COLUMNS,
                notes=[f"Training consumes: {gpu_samples_per_second:.3g} samples/s x {gpu_config.num_clips} clips "
                       f"({gpu_samples_per_second * gpu_config.num_clips * gpu_config.frames_per_clip:.3g} frames/s), "
                       "the default configuration's step given with --gpu_samples_per_second (one H100: batch 8 in "
                       f"0.317 s). Each worker's first batch is not timed; then {DEFAULT_CONFIG_BATCHES} batches."],
            )
            measure_paths(gpu_table, gpu_sources, gpu_processor, gpu_config, paths, [1], DEFAULT_CONFIG_BATCH_SIZE,
                          DEFAULT_CONFIG_BATCHES, args.shard_fps, gpu_samples_per_second * gpu_config.num_clips,
                          folder)
            tables.append(gpu_table)
    for table in tables:
        table.print()
    return tables


if __name__ == "__main__":
    main()
