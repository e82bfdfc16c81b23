"""The LocVTP ablation on the built-in synthetic world: what fine-grained clip-word alignment and the temporal-aware
loss add to coarse video-sentence alignment, for localization and for retrieval.

    python examples/ablation.py                                  # 4 variants x 3 seeds: 45 min on 2 CPU cores
    python examples/ablation.py --seeds 0 --max_steps 200        # a quick look
    python examples/ablation.py --help

Variants, each pre-trained with `examples/pretrain.py` on the same data, budget and seeds:

- `no_pretraining`: the same architecture, not pre-trained (`--max_steps 0`): the floor;
- `coarse`: coarse video-sentence alignment only (`--fine_loss_weight 0 --temporal_loss_weight 0`);
- `coarse_fine`: + fine-grained clip-word alignment (`--temporal_loss_weight 0`);
- `full`: + the context projection head and the temporal-aware loss (all three losses).

Every pre-trained model is then evaluated the same way: the zero-shot figures that `pretrain.py` writes (the clip
localization probe, text-to-video retrieval R@1 / R@5 on held-out videos), and temporal grounding with frozen clip
features: a 2D-TAN head trained on the world's training grounding queries and evaluated on the held-out ones
(R@1 at IoU 0.5 and 0.7, mIoU). The script writes every run's figures and their mean and standard deviation over
seeds to `<output_dir>/ablation_results.json` and a markdown table to `<output_dir>/ABLATION.md`.

A run that has finished (its `eval_results.json` and `grounding_results.json` exist) is not run again, so an
interrupted ablation continues where it stopped; a run folder written with other settings (budget, world, grounding
head) is refused rather than mixed in. Each run's wall time is kept in its `timing.json`, and the table states the
total.
"""

import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from locvtp_hf import LocVTPForTemporalGrounding, LocVTPProcessor
from locvtp_hf.grounding_finetuning import (
    GroundingFeatureDataset,
    compute_clip_features,
    evaluate_grounding_model,
    synthetic_grounding_queries,
    train_grounding_model,
)
from locvtp_hf.synthetic_world import SyntheticWorld


logger = logging.getLogger(__name__)

PRETRAIN_SCRIPT = Path(__file__).with_name("pretrain.py")
# pretrain.py arguments of each variant; no_pretraining keeps the initial weights
VARIANTS = {
    "no_pretraining": ["--max_steps", "0"],
    "coarse": ["--fine_loss_weight", "0", "--temporal_loss_weight", "0"],
    "coarse_fine": ["--temporal_loss_weight", "0"],
    "full": [],
}
# (result key, column title) of the table, localization first
FIGURES = [
    ("grounding_R@1,IoU=0.5", "grounding R@1 IoU 0.5"),
    ("grounding_R@1,IoU=0.7", "grounding R@1 IoU 0.7"),
    ("grounding_mIoU", "grounding mIoU"),
    ("probe_hit_rate", "zero-shot probe"),
    ("text_to_video_R@1", "zero-shot R@1"),
    ("text_to_video_R@5", "zero-shot R@5"),
]


@dataclass
class AblationArguments:
    output_dir: str = field(default="outputs/ablation", metadata={"help": "Where every run and the table go."})
    variants: list[str] = field(
        default_factory=lambda: list(VARIANTS), metadata={"help": f"Variants to run, of {list(VARIANTS)}."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Pre-training seeds."})
    max_steps: int = field(default=500, metadata={"help": "Pre-training steps of every pre-trained variant."})
    world_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world (the same for every run)."})
    world_train_videos: int = field(default=400, metadata={"help": "Training videos of the synthetic world."})
    world_test_videos: int = field(default=100, metadata={"help": "Held-out videos of the synthetic world."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader workers of pre-training."})
    grounding_steps: int = field(default=300, metadata={"help": "Training steps of the grounding head."})
    grounding_batch_size: int = field(default=32, metadata={"help": "Queries per grounding step."})
    grounding_learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of the head."})
    grounding_hidden_size: int = field(default=64, metadata={"help": "Width of the head's 2D map."})
    grounding_num_conv_layers: int = field(default=2, metadata={"help": "Masked convolutions of the head."})
    grounding_conv_kernel_size: int = field(default=3, metadata={"help": "Kernel of the head's convolutions."})


def run_settings(args: AblationArguments, variant: str, seed: int) -> dict:
    """Everything that shapes one run's figures."""
    settings = {"variant": variant, "seed": seed, "max_steps": 0 if variant == "no_pretraining" else args.max_steps}
    for name, value in asdict(args).items():
        if name.startswith(("world_", "grounding_")):
            settings[name] = value
    return settings


def claim_run_folder(run_dir: Path, settings: dict) -> None:
    """Record the run's settings in its folder, or check them against those of the run already there."""
    settings_file = run_dir / "run_settings.json"
    if not settings_file.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        settings_file.write_text(json.dumps(settings, indent=2) + "\n")
        return
    saved = json.loads(settings_file.read_text())
    changed = {name: (saved.get(name), value) for name, value in settings.items() if saved.get(name) != value}
    if changed:
        raise ValueError(
            f"{run_dir} holds a run with other settings ("
            + ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
            + "): choose another --output_dir, or delete the folder to run it again."
        )


def timed(run_dir: Path, stage: str, work):
    """Run `work()` and add its wall time to the run's `timing.json` under `stage`."""
    start = time.perf_counter()
    result = work()
    timing_file = run_dir / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    timing[stage] = time.perf_counter() - start
    timing_file.write_text(json.dumps(timing, indent=2) + "\n")
    return result


def pretrain(args: AblationArguments, variant: str, seed: int, run_dir: Path) -> dict:
    """Pre-train (or, for the floor, only save) one variant with `examples/pretrain.py`; its zero-shot figures."""
    results_file = run_dir / "eval_results.json"
    if not results_file.exists():
        command = [
            sys.executable, str(PRETRAIN_SCRIPT),
            "--output_dir", str(run_dir),
            "--seed", str(seed),
            "--max_steps", str(args.max_steps),
            "--checkpointing_steps", "0",
            "--num_workers", str(args.num_workers),
            "--world_seed", str(args.world_seed),
            "--world_train_videos", str(args.world_train_videos),
            "--world_test_videos", str(args.world_test_videos),
            *VARIANTS[variant],
        ]  # fmt: skip
        with open(run_dir / "pretrain.log", "w") as log:
            timed(run_dir, "pretrain_s", lambda: subprocess.run(command, stdout=log, stderr=log, check=True))
    return json.loads(results_file.read_text())


def ground(args: AblationArguments, world: SyntheticWorld, seed: int, run_dir: Path) -> dict:
    """Train a grounding head on the frozen clip features of one pre-trained model; its held-out figures."""
    results_file = run_dir / "grounding_results.json"
    if not results_file.exists():
        results = timed(run_dir, "grounding_s", lambda: train_and_evaluate_head(args, world, seed, run_dir))
        results_file.write_text(json.dumps(results, indent=2) + "\n")
    return json.loads(results_file.read_text())


def train_and_evaluate_head(args: AblationArguments, world: SyntheticWorld, seed: int, run_dir: Path) -> dict:
    torch.manual_seed(seed)  # the head's initial weights
    model = LocVTPForTemporalGrounding.from_pretrained(
        run_dir,
        grounding_hidden_size=args.grounding_hidden_size,
        grounding_num_conv_layers=args.grounding_num_conv_layers,
        grounding_conv_kernel_size=args.grounding_conv_kernel_size,
        grounding_freeze_encoder=True,
    )
    model.locvtp.requires_grad_(False)
    processor = LocVTPProcessor.from_pretrained(run_dir)
    videos = {video.video_id: video.video_id for split in ("train", "test") for video in world.videos(split)}
    features, failures = compute_clip_features(
        model, processor, videos, load_video=world.render, video_fps=world.fps, progress=False
    )
    if failures:
        raise RuntimeError(f"Synthetic videos could not be encoded: {failures[:3]}")
    train_queries = synthetic_grounding_queries(world, "train")
    test_queries = synthetic_grounding_queries(world, "test")
    train_grounding_model(
        model,
        GroundingFeatureDataset(train_queries, features, processor, training=True),
        max_steps=args.grounding_steps,
        batch_size=args.grounding_batch_size,
        learning_rate=args.grounding_learning_rate,
        warmup_steps=args.grounding_steps // 10,
        seed=seed,
        progress=False,
    )
    evaluation = evaluate_grounding_model(model, processor, GroundingFeatureDataset(test_queries, features, processor))
    return {f"grounding_{name}": value for name, value in evaluation.metrics.items()}


def summarize(runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, tuple[float, float]]]:
    """`variant -> figure -> (mean, standard deviation over seeds)`."""
    summary = {}
    for variant, by_seed in runs.items():
        summary[variant] = {}
        for key, _ in FIGURES:
            values = [results[key] for results in by_seed.values()]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[variant][key] = (statistics.mean(values), spread)
    return summary


def markdown_table(summary: dict, args: AblationArguments, minutes: float) -> str:
    """The summary as a markdown table, with the settings and the wall time of all its runs."""
    lines = [
        f"| variant | {' | '.join(title for _, title in FIGURES)} |",
        f"|---|{'---|' * len(FIGURES)}",
    ]
    for variant, figures in summary.items():
        cells = [f"{mean:.3f} ± {spread:.3f}" for mean, spread in (figures[key] for key, _ in FIGURES)]
        lines.append(f"| {variant} | {' | '.join(cells)} |")
    return (
        "\n".join(lines)
        + f"\n\nMean ± standard deviation over seeds {args.seeds}; {args.max_steps} pre-training steps per variant "
        f"(`examples/pretrain.py` defaults otherwise); grounding head: {args.grounding_steps} steps on frozen clip "
        f"features, {args.world_test_videos} held-out videos. The runs took {minutes:.0f} min of wall time in all.\n"
    )


def main():
    (args,) = HfArgumentParser(AblationArguments, description=__doc__).parse_args_into_dataclasses()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"Unknown variant(s) {sorted(unknown)}; choose among {list(VARIANTS)}.")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    output_dir = Path(args.output_dir)
    world = SyntheticWorld(seed=args.world_seed, num_train=args.world_train_videos, num_test=args.world_test_videos)

    runs = {variant: {} for variant in args.variants}
    seconds = 0.0
    for seed in args.seeds:
        for variant in args.variants:
            run_dir = output_dir / variant / f"seed_{seed}"
            claim_run_folder(run_dir, run_settings(args, variant, seed))
            logger.info(f"{variant}, seed {seed}: pre-training")
            results = pretrain(args, variant, seed, run_dir)
            logger.info(f"{variant}, seed {seed}: grounding head")
            results.update(ground(args, world, seed, run_dir))
            runs[variant][seed] = results
            seconds += sum(json.loads((run_dir / "timing.json").read_text()).values())
            logger.info(f"{variant}, seed {seed}: " + ", ".join(f"{key} {results[key]:.3f}" for key, _ in FIGURES))
    minutes = seconds / 60

    summary = summarize(runs)
    table = markdown_table(summary, args, minutes)
    print("\n" + table)
    (output_dir / "ABLATION.md").write_text(table)
    (output_dir / "ablation_results.json").write_text(
        json.dumps({"arguments": asdict(args), "runs": runs, "summary": summary, "minutes": minutes}, indent=2)
    )
    logger.info(f"Results in {output_dir / 'ablation_results.json'} and {output_dir / 'ABLATION.md'}")


if __name__ == "__main__":
    main()
