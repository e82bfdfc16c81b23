"""Write pre-training shards of small clips: each (video, span, text) row's span decoded once, resized, resampled at a
fixed frame rate and re-encoded in webdataset tar shards, so that a large run reads small frames.

    python examples/write_video_shards.py --input videos/ --output_dir shards/ --short_side 224 --fps 8
    python examples/write_video_shards.py --input pairs.csv --output_dir shards/ --short_side 64 --num_workers 8
    accelerate launch examples/pretrain.py --train_data 'shards/*.tar' --text_model_name_or_path ...

`--input` is a folder in the `videofolder` layout (`metadata.jsonl` or `metadata.csv` with `file_name`, `text`,
optional `start`, `end`) or a CSV file with the columns `video` (relative to the CSV's folder, or absolute), `text`
and optional `start`, `end` (seconds; empty: the whole video). Shard `i` holds rows `i * samples_per_shard` on: run
the command again after an interruption and it keeps the complete shards and writes the rest. Videos that cannot be
read are left out, listed at the end. See docs/video_processing.md.
"""

import argparse
import logging
from pathlib import Path

from locvtp_hf.data import videofolder_rows
from locvtp_hf.video_shards import csv_rows, write_video_shards


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a videofolder (with metadata.jsonl / .csv) or a .csv file")
    parser.add_argument("--output_dir", required=True, help="folder of the shards (created)")
    parser.add_argument("--short_side", type=int, default=224,
                        help="pixels of the frames' shorter side: the model's image size (224 for the default "
                        "configuration) or a little more")
    parser.add_argument("--fps", type=float, default=8.0,
                        help="frame rate of the stored clips: at least the frames a sample takes over its span")
    parser.add_argument("--samples_per_shard", type=int, default=1000, help="rows per shard")
    parser.add_argument("--lossless", action="store_true", help="store the frames exactly (about twice the size)")
    parser.add_argument("--crf", type=int, default=18, help="x264 quality when not lossless: 0-51, lower is better")
    parser.add_argument("--keyframe_interval", type=int, default=1,
                        help="frames from one keyframe to the next: 1 (default) lets a sample decode only the frames "
                        "it takes; larger values (x264's default: 250) make the shards about 2.5 times smaller")
    parser.add_argument("--num_workers", type=int, default=0, help="processes writing shards in parallel")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    source = Path(args.input)
    if source.is_dir():
        rows = videofolder_rows(source)
    elif source.suffix.lower() == ".csv":
        rows = csv_rows(source)
    else:
        parser.error(f"--input {source} is neither a folder nor a .csv file")
    report = write_video_shards(
        rows, args.output_dir, short_side=args.short_side, fps=args.fps, samples_per_shard=args.samples_per_shard,
        lossless=args.lossless, crf=args.crf, keyframe_interval=args.keyframe_interval, num_workers=args.num_workers,
    )
    print(
        f"{len(report.shards)} shard(s) of {len(rows)} rows in {args.output_dir}: {len(report.written)} written, "
        f"{len(report.kept)} kept from an earlier run; {len(report.failed)} row(s) left out"
        + "".join(f"\n  {error}" for error in report.failed)
    )


if __name__ == "__main__":
    main()
