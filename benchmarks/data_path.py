"""Clips decoded per second per DataLoader worker from real video files, against what a training step consumes.

    python benchmarks/data_path.py [--config tiny|small|default] [--num_videos 32] [--real_videos DIR]
        [--num_workers 1 2] [--batch_size 32] [--batches 4] [--train_samples_per_second S] [--device auto]
        [--quick]

The videos: `--num_videos` videos of the built-in synthetic world exported as H.264 mp4 files (64 px, 4 fps, 16-40
s; their pre-training pairs are spans of a few seconds), and every video file in `--real_videos` (default:
`$LOCVTP_REAL_DATA/videos` when set), each read as a whole. They go through the pre-training data path:
`VideoTextPairDataset` (PyAV decoding of the sampled frames, resize, crop, normalisation, at random clip offsets)
and `VideoTextCollator` (stacking, tokenization) in a `DataLoader` with each number of `--num_workers`. Each worker's
first batch (process start-up) is not timed; then `--batches` batches per worker are.

The training step's consumption is `samples/s x num_clips` of the same configuration and batch size, measured with
`benchmarks/train_step.py`'s step on `--device`, or given with `--train_samples_per_second` (e.g. a GPU's figure from
`train_step.py`). "workers to keep up" is how many workers, at the measured rate each, feed one training process.
"""

import argparse
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

from locvtp_hf import LocVTPConfig, LocVTPProcessor, LocVTPVideoProcessor
from locvtp_hf.data import VIDEO_EXTENSIONS, VideoTextCollator, VideoTextPairDataset, videofolder_rows
from locvtp_hf.synthetic import SyntheticWorld


COLUMNS = [
    "source", "videos", "workers", "clips / s", "clips / s per worker", "training consumes clips / s",
    "workers to keep up", "skipped videos",
]


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


def clips_per_second(
    rows, processor: LocVTPProcessor, num_workers: int, batch_size: int, batches: int
) -> tuple[float, int]:
    """`(clips decoded per second, videos skipped)` of a `DataLoader` over `rows` with `num_workers` workers (0: in
    this process), after each worker's first batch."""
    dataset = VideoTextPairDataset(rows, processor, training=True)
    workers = max(num_workers, 1)
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=batch_size * workers * (batches + 1),
        generator=torch.Generator().manual_seed(0),
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        collate_fn=VideoTextCollator(processor),
    )
    iterator = iter(loader)
    skipped = 0
    for _ in range(workers):  # each worker's first batch: process start-up
        skipped += len(next(iterator)["skipped"])
    clips = 0
    start = time.perf_counter()
    for batch in iterator:
        clips += batch["pixel_values_videos"].shape[0] * batch["pixel_values_videos"].shape[1]
        skipped += len(batch["skipped"])
    return clips / (time.perf_counter() - start), skipped


def main(argv: list[str] | None = None) -> list[Table]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=list(CONFIGS), default="small",
                        help="clip sampling, frame size and training step of this configuration")
    parser.add_argument("--num_videos", type=int, default=32, help="synthetic-world videos to export (0: none)")
    parser.add_argument("--real_videos", help="a folder of video files (default: $LOCVTP_REAL_DATA/videos if set)")
    parser.add_argument("--num_workers", type=int, nargs="+", default=[1, 2], help="DataLoader workers to try")
    parser.add_argument("--batch_size", type=int, default=32, help="samples per batch (and per training step)")
    parser.add_argument("--batches", type=int, default=4, help="timed batches per worker")
    parser.add_argument("--train_samples_per_second", type=float,
                        help="the training step's samples/s (default: measured here on --device)")
    parser.add_argument("--device", default="auto", help="where the training step is measured: auto, cpu, cuda")
    parser.add_argument("--quick", action="store_true",
                        help="a check that the script works: 2 synthetic videos, 1 worker, batches of 4")
    args = parser.parse_args(argv)
    if args.quick:
        num_videos, num_workers, batch_size, batches = min(args.num_videos, 2), [1], 4, 1
    else:
        num_videos, num_workers, batch_size, batches = args.num_videos, args.num_workers, args.batch_size, args.batches
    real_folder = args.real_videos
    if real_folder is None and os.environ.get("LOCVTP_REAL_DATA") and not args.quick:
        real_folder = str(Path(os.environ["LOCVTP_REAL_DATA"]) / "videos")
    for name, value in (("--batch_size", batch_size), ("--batches", batches)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if args.train_samples_per_second is not None and args.train_samples_per_second <= 0:
        parser.error(f"--train_samples_per_second must be positive, got {args.train_samples_per_second}")
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
    consumed = samples_per_second * config.num_clips

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
        processor = make_processor(config, texts)
        height, width = config.image_size
        table = Table(
            title=f"Data path: clips of {config.frames_per_clip} frames at {height}x{width} px decoded per second "
            f"({args.config} configuration, {config.num_clips} clips per sample, batches of {batch_size})",
            columns=COLUMNS,
            notes=[
                f"Training consumes: {samples_per_second:.3g} samples/s x {config.num_clips} clips, {step_source}. "
                f"Each worker's first batch is not timed; then {batches} batches per worker."
            ],
        )
        for source, (rows, count) in sources.items():
            for workers in num_workers:
                rate, skipped = clips_per_second(rows, processor, workers, batch_size, batches)
                per_worker = rate / max(workers, 1)
                table.rows.append({
                    "source": source,
                    "videos": count,
                    "workers": workers if workers else "0 (main process)",
                    "clips / s": rate,
                    "clips / s per worker": per_worker,
                    "training consumes clips / s": consumed,
                    "workers to keep up": math.ceil(consumed / per_worker),
                    "skipped videos": skipped,
                })
                print(f"{source}, {workers} workers: {rate:.3g} clips/s", flush=True)
    table.print()
    return [table]


if __name__ == "__main__":
    main()
