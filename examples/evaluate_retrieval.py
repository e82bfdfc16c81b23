"""Evaluate a LocVTP checkpoint (pre-training or retrieval) on a text-video retrieval set.

    python examples/evaluate_retrieval.py --model_name_or_path outputs/finetune_retrieval    # synthetic test videos
    python examples/evaluate_retrieval.py --model_name_or_path CHECKPOINT --dataset msrvtt \\
        --annotations MSRVTT_JSFUSION_test.csv --video_dir videos --renormalization dsl --output_file msrvtt.json
    python examples/evaluate_retrieval.py --help

Prints text-to-video and video-to-text R@1/5/10, median and mean rank (and, with `--renormalization`, the same after
DSL or inverted-softmax re-normalisation, beside the plain figures) and writes them as JSON to `--output_file`. A
video that cannot be read (a missing file, a corrupt or truncated one) is skipped with its captions and reported: the
figures are over the others, `num_unreadable_videos` counts the skipped ones, and
`<output_file stem>.failed_videos.json` lists them. See docs/retrieval.md for the readers, the metrics and the tie
rule.

Arguments: the `EvaluationArguments` dataclass below and the synthetic world's `SyntheticWorldArguments` (read only
with `--dataset synthetic`), parsed with `HfArgumentParser` by `locvtp_hf.training.parse_arguments` (so `--config
run.yaml` works too).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from locvtp_hf import LocVTPForRetrieval, LocVTPProcessor
from locvtp_hf.evaluation import retrieval_evaluation
from locvtp_hf.retrieval_datasets import DATASET_NAMES, load_retrieval_dataset
from locvtp_hf.retrieval_metrics import RENORMALIZATIONS
from locvtp_hf.training import SyntheticWorldArguments, parse_arguments


MAX_LISTED_FAILURES = 5


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(metadata={"help": "A LocVTP checkpoint folder or Hub id, with its processor."})
    dataset: str = field(default="synthetic", metadata={"help": f"One of {DATASET_NAMES}."})
    annotations: str | None = field(default=None, metadata={"help": "Annotation file (all but synthetic)."})
    video_dir: str | None = field(default=None, metadata={"help": "Folder of the videos."})
    extension: str | None = field(
        default=None,
        metadata={
            "help": "Extension of the video files of msrvtt, didemo and activitynet, e.g. .webm for an ActivityNet "
            "download or .mp4 for re-encoded DiDeMo videos (default: the reader's own: .mp4, none, .mp4)."
        },
    )
    video_ids: str | None = field(default=None, metadata={"help": "MSR-VTT: keep only these videos (CSV or txt)."})
    batch_size: int = field(default=16, metadata={"help": "Videos per forward pass."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader processes decoding videos (0: in-process)."})
    disable_progress_bar: bool = field(default=False, metadata={"help": "Do not show the encoding progress bar."})
    retrieval_fusion_weight: float | None = field(
        default=None, metadata={"help": "Weight in [0, 1] of the fine-grained score. Default: the checkpoint's."}
    )
    renormalization: str | None = field(
        default=None, metadata={"help": f"Also report metrics after {RENORMALIZATIONS} re-normalisation."}
    )
    renormalization_temperature: float = field(default=0.01, metadata={"help": "Its softmax temperature."})
    output_file: str | None = field(default=None, metadata={"help": "Write the metrics here as JSON."})


def check_arguments(args: EvaluationArguments) -> None:
    """Clear errors for bad arguments, before any work."""
    if args.dataset not in DATASET_NAMES:
        raise ValueError(f"--dataset {args.dataset!r} is not one of {DATASET_NAMES}.")
    if args.dataset != "synthetic" and not args.annotations:
        raise ValueError(f"--dataset {args.dataset} needs --annotations.")
    if args.renormalization is not None and args.renormalization not in RENORMALIZATIONS:
        raise ValueError(f"--renormalization must be one of {RENORMALIZATIONS}, got {args.renormalization!r}.")
    if args.retrieval_fusion_weight is not None and not 0 <= args.retrieval_fusion_weight <= 1:
        raise ValueError(f"--retrieval_fusion_weight must be in [0, 1], got {args.retrieval_fusion_weight}.")
    if args.batch_size < 1:
        raise ValueError("--batch_size must be at least 1.")
    if args.num_workers < 0:
        raise ValueError(f"--num_workers must be 0 or more, got {args.num_workers}.")


def main():
    args, world_args = parse_arguments((EvaluationArguments, SyntheticWorldArguments), description=__doc__)
    check_arguments(args)
    world = world_args.build() if args.dataset == "synthetic" else None
    load_video, video_fps = (world.render, world.fps) if world is not None else (None, None)
    dataset = load_retrieval_dataset(
        args.dataset, args.annotations, args.video_dir, args.video_ids, world=world, extension=args.extension
    )

    overrides = {}
    if args.retrieval_fusion_weight is not None:
        overrides["retrieval_fusion_weight"] = args.retrieval_fusion_weight
    model = LocVTPForRetrieval.from_pretrained(args.model_name_or_path, **overrides)
    processor = LocVTPProcessor.from_pretrained(args.model_name_or_path)
    model.to(torch.accelerator.current_accelerator() if torch.accelerator.is_available() else "cpu")

    metrics, unreadable = retrieval_evaluation(
        model,
        processor,
        dataset,
        load_video=load_video,
        video_fps=video_fps,
        batch_size=args.batch_size,
        renormalization=args.renormalization,
        temperature=args.renormalization_temperature,
        num_workers=args.num_workers,
        progress_bar=not args.disable_progress_bar,
        skip_unreadable=True,
    )
    metrics["num_unreadable_videos"] = len(unreadable)
    failures = [
        {"video_id": dataset[video.index]["video_id"], "video": video.video, "error": video.reason}
        for video in unreadable
    ]
    print(f"\n| {args.dataset} retrieval | value |\n|---|---|")
    for name, value in metrics.items():
        print(f"| {name} | {value:.3f} |" if isinstance(value, float) else f"| {name} | {value} |")
    print(f"\nEvaluated {metrics['num_videos']} of {len(dataset)} videos ({metrics['num_texts']} captions).")
    if failures:
        print(f"{len(failures)} videos could not be read and were left out with their captions:")
        for failure in failures[:MAX_LISTED_FAILURES]:
            print(f"  {failure['video_id']}: {failure['error']}")
        if len(failures) > MAX_LISTED_FAILURES:
            print(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more")
    if args.output_file:
        output_file = Path(args.output_file)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        output_file.write_text(json.dumps(metrics, indent=2) + "\n")
        failures_file = output_file.with_name(f"{output_file.stem}.failed_videos.json")
        if failures:
            failures_file.write_text(json.dumps(failures, indent=2) + "\n")
            print(f"All unreadable videos are listed in {failures_file}.")
        else:
            failures_file.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
