"""The LocVTP ablation on the built-in synthetic world: do fine-grained clip-word alignment and the temporal-aware loss
make clip features localize better than coarse video-sentence alignment alone?

    python examples/ablation.py                                          # the main grid (see docs/ablation.md)
    python examples/ablation.py --worlds hard --variants coarse full --seeds 0 1 2 3 4
    python examples/ablation.py --quick                                  # a tiny end-to-end run, for tests
    python examples/ablation.py --help

Every variant is pre-trained with `examples/pretrain.py` on the same world, budget and seeds; only the loss settings
differ (`VARIANTS`). The worlds (`WORLDS`): `easy`, where each event has its own object, drawn only during the
event, and pre-training spans are cut exactly to the event; `misaligned`, the same videos with each pre-training span
widened so that its event covers half of it, as in narrated video (the regime correspondence discovery is meant
for); `hard`, where one object stays on screen and performs every event (only the action marks the moment) and the
spans are widened likewise.

Each pre-trained model is measured on the world's held-out videos with figures that see the encoder, not a head:

- head-free localization (`locvtp_hf.evaluation.localization_evaluation`): in-video AUC of sentence-clip similarity
  inside vs outside the moment, zero-shot moment localization with no trained parameter (R@1 at IoU 0.3 / 0.5 / 0.7,
  mIoU; and the same for the whole video as the answer, the floor), the clip probe; on the validation split and on
  the test split (the test figures are reported, the validation ones are the only ones used to choose settings);
- a linear probe of the action on frozen clip features (trained on training videos, scored on test videos);
- correspondence discovery accuracy: on two-sentence pairs ("A, then B"), how often a clip inside A's event picks a
  word that only A's sentence has (and likewise for B), against a word picked at random; and the share of picked
  words that are stop words;
- retrieval: zero-shot text-to-video R@1 / R@5 (from `pretrain.py`);
- a 2D-TAN head trained on frozen clip features with 5 %, 10 % and 100 % of the training queries, with a flag when
  it collapsed (one moment, relative to the video, answers at least half of the test queries).

The script writes each run's figures (and per-query values) to its folder, then `ablation_results.json` and
`ABLATION.md` in `--output_dir`: per variant the mean and 95 % confidence interval over seeds, the paired difference
with `coarse` per seed (mean and 95 % t-interval), and for the localization figures a per-query bootstrap interval of
that difference. Finished runs are not run again (an interrupted ablation continues), and a run folder written with
other settings is refused rather than mixed in.
"""

import json
import logging
import math
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

from locvtp_hf import LocVTPForTemporalGrounding, LocVTPModel, LocVTPProcessor
from locvtp_hf.encoding import FailedVideo, encode_clip_features, encode_videos
from locvtp_hf.evaluation import localization_evaluation
from locvtp_hf.grounding_finetuning import GroundingFeatureDataset, evaluate_grounding_model, train_grounding_model
from locvtp_hf.loss import discover_correspondence
from locvtp_hf.stop_words import stop_word_token_ids
from locvtp_hf.synthetic import CAPTION_SEPARATOR, SyntheticWorld


logger = logging.getLogger(__name__)

PRETRAIN_SCRIPT = Path(__file__).with_name("pretrain.py")
# pretrain.py arguments of each world: the world's options, also used to build it here
WORLDS = {
    "easy": {"persistent_object": False, "persistent_object_looks": None, "pretraining_span_coverage": 1.0},
    "misaligned": {"persistent_object": False, "persistent_object_looks": None, "pretraining_span_coverage": 0.5},
    "hard": {"persistent_object": True, "persistent_object_looks": None, "pretraining_span_coverage": 0.5},
    "hard_one_look": {"persistent_object": True, "persistent_object_looks": 1, "pretraining_span_coverage": 0.5},
}


def _design(
    negatives: str = "other_samples", stop_words: bool = False, mutual: bool = False, warmup_steps: int = 0
) -> list[str]:
    """pretrain.py's arguments of the open design choices of the fine-grained terms and of the term balance."""
    flag = {False: "false", True: "true"}
    return [
        "--fine_negatives", negatives, "--discovery_stop_words", flag[stop_words], "--discovery_mutual", flag[mutual],
        "--localization_warmup_steps", str(warmup_steps),
    ]  # fmt: skip


_OTHER, _OTHER_STOP = _design(), _design(stop_words=True)
_SAME, _SAME_STOP = _design("same_and_other_samples"), _design("same_and_other_samples", stop_words=True)
_MUTUAL, _MUTUAL_STOP = _design(mutual=True), _design(stop_words=True, mutual=True)
_MUTUAL_WARMUP = _design(mutual=True, warmup_steps=500)
# pretrain.py arguments of each variant, every design option spelled out so that a change of pretrain.py's defaults
# does not change what a variant means
VARIANTS = {
    "no_pretraining": ["--max_steps", "0", *_OTHER],
    "coarse": ["--fine_loss_weight", "0", "--temporal_loss_weight", "0", *_OTHER],
    "coarse_fine": ["--temporal_loss_weight", "0", *_OTHER],
    "full": [*_OTHER],
    "full_no_warp": ["--temporal_cross_modal_weight", "0", *_OTHER],
    "full_no_intra": ["--temporal_intra_video_weight", "0", *_OTHER],
    "full_stop_words": [*_OTHER_STOP],
    "coarse_fine_same_sample": ["--temporal_loss_weight", "0", *_SAME],
    "full_same_sample": [*_SAME],
    "full_same_sample_stop_words": [*_SAME_STOP],
    "coarse_fine_mutual": ["--temporal_loss_weight", "0", *_MUTUAL],
    "full_mutual": [*_MUTUAL],
    "full_mutual_stop_words": [*_MUTUAL_STOP],
    "full_mutual_warmup": [*_MUTUAL_WARMUP],
    "coarse_fine_mutual_warmup": ["--temporal_loss_weight", "0", *_MUTUAL_WARMUP],
    "full_mutual_long_warmup": _design(mutual=True, warmup_steps=1000),
}
BASELINE = "coarse"
# (result key, column title) of the tables, localization first
FIGURES = [
    ("in_video_auc", "in-video AUC"),
    ("zero_shot_R@1,IoU=0.5", "zero-shot R@1 IoU 0.5"),
    ("zero_shot_R@1,IoU=0.3", "zero-shot R@1 IoU 0.3"),
    ("zero_shot_mIoU", "zero-shot mIoU"),
    ("probe_hit_rate", "clip probe"),
    ("action_probe_accuracy", "action probe"),
    ("discovery_accuracy", "discovery accuracy"),
    ("discovery_stop_word_share", "discovery stop-word share"),
    ("text_to_video_R@1", "retrieval R@1"),
    ("text_to_video_R@5", "retrieval R@5"),
    ("grounding_5%_R@1,IoU=0.5", "2D-TAN 5% R@1 IoU 0.5"),
    ("grounding_10%_R@1,IoU=0.5", "2D-TAN 10% R@1 IoU 0.5"),
    ("grounding_100%_R@1,IoU=0.5", "2D-TAN 100% R@1 IoU 0.5"),
]
# the figures with a per-query bootstrap: figure -> (per-query key, IoU threshold that makes the value a hit or None)
PER_QUERY = {
    "in_video_auc": ("in_video_auc", None),
    "zero_shot_R@1,IoU=0.5": ("zero_shot_iou", 0.5),
    "zero_shot_R@1,IoU=0.3": ("zero_shot_iou", 0.3),
    "zero_shot_mIoU": ("zero_shot_iou", None),
    "probe_hit_rate": ("probe_hit", None),
}
GROUNDING_FRACTIONS = (0.05, 0.10, 1.0)
# what a finished run has written
RESULT_FILES = ("eval_results.json", "measures.json", "grounding_results.json")
# two-sided 95 % quantiles of Student's t by degrees of freedom (beyond 30: the normal's)
T_QUANTILES_95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    25: 2.060, 30: 2.042,
}  # fmt: skip


@dataclass
class AblationArguments:
    output_dir: str = field(default="outputs/ablation", metadata={"help": "Where every run and the tables go."})
    worlds: list[str] = field(default_factory=lambda: ["hard", "easy"], metadata={"help": f"Of {list(WORLDS)}."})
    variants: list[str] = field(
        default_factory=lambda: ["no_pretraining", "coarse", "coarse_fine", "full", "full_same_sample"],
        metadata={"help": f"Variants to run, of {list(VARIANTS)}."},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4], metadata={"help": "Pre-training seeds."})
    max_steps: int = field(default=400, metadata={"help": "Pre-training steps of every pre-trained variant."})
    world_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world (the same for every run)."})
    world_train_videos: int = field(default=400, metadata={"help": "Training videos of the synthetic world."})
    world_validation_videos: int = field(default=50, metadata={"help": "Validation videos (to choose settings)."})
    world_test_videos: int = field(default=100, metadata={"help": "Held-out test videos (reported)."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader workers of pre-training."})
    num_clips: int = field(default=16, metadata={"help": "Clips per whole video in the head-free measures."})
    grounding_steps: int = field(default=200, metadata={"help": "Training steps of each grounding head."})
    grounding_batch_size: int = field(default=32, metadata={"help": "Queries per grounding step."})
    grounding_learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of the head."})
    grounding_hidden_size: int = field(default=64, metadata={"help": "Width of the head's 2D map."})
    action_ceiling_steps: int = field(
        default=1000,
        metadata={"help": "Steps of the supervised action ceiling of each world: a new clip encoder trained on the "
                  "clips' action labels, what the encoder can show of the actions at all (0: skip it)."},
    )
    bootstrap_samples: int = field(default=2000, metadata={"help": "Resamples of the per-query bootstrap."})
    quick: bool = field(
        default=False, metadata={"help": "A tiny run (a few videos, steps and queries) to check that all of it works."}
    )
    summarize_only: bool = field(
        default=False, metadata={"help": "Summarise the finished runs only: run nothing, leave unfinished runs out."}
    )


def apply_quick(args: AblationArguments) -> None:
    """`--quick`: the smallest settings that still exercise every stage."""
    args.max_steps, args.world_train_videos, args.world_validation_videos, args.world_test_videos = 2, 8, 3, 3
    args.action_ceiling_steps = 2
    args.grounding_steps, args.grounding_batch_size, args.num_workers, args.bootstrap_samples = 2, 4, 0, 50


def build_world(args: AblationArguments, world_name: str) -> SyntheticWorld:
    return SyntheticWorld(
        seed=args.world_seed,
        num_train=args.world_train_videos,
        num_validation=args.world_validation_videos,
        num_test=args.world_test_videos,
        **WORLDS[world_name],
    )


def run_settings(args: AblationArguments, world: str, variant: str, seed: int) -> dict:
    """Everything that shapes one run's figures."""
    settings = {"world": world, "variant": variant, "seed": seed, "arguments": VARIANTS[variant]}
    settings["max_steps"] = 0 if variant == "no_pretraining" else args.max_steps
    for name, value in asdict(args).items():
        if name.startswith(("world_", "grounding_")) or name == "num_clips":
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


def cached(run_dir: Path, name: str, work) -> dict:
    """`work()`'s JSON result, computed once: kept in `run_dir / name`, with its wall time in `timing.json`."""
    path = run_dir / name
    if not path.exists():
        start = time.perf_counter()
        result = work()
        timing_file = run_dir / "timing.json"
        timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
        timing[path.stem] = time.perf_counter() - start
        timing_file.write_text(json.dumps(timing, indent=2) + "\n")
        path.write_text(json.dumps(result, indent=2) + "\n")
    return json.loads(path.read_text())


# ---- one run: pre-training and measures ----------------------------------------------------------------------------


def run_pretrain_script(args: AblationArguments, world_name: str, variant: str, seed: int, run_dir: Path, *extra):
    """`examples/pretrain.py` for one variant (then `extra` arguments), its output in `run_dir/pretrain.log`."""
    world_options = WORLDS[world_name]
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
        "--world_persistent_object", str(world_options["persistent_object"]).lower(),
        *(["--world_persistent_object_looks", str(world_options["persistent_object_looks"])]
          if world_options["persistent_object_looks"] else []),
        "--world_pretraining_span_coverage", str(world_options["pretraining_span_coverage"]),
        *VARIANTS[variant],
        *extra,
    ]  # fmt: skip
    with open(run_dir / "pretrain.log", "w") as log:
        subprocess.run(command, stdout=log, stderr=log, check=True)


def pretrain(args: AblationArguments, world_name: str, variant: str, seed: int, run_dir: Path) -> dict:
    """Pre-train (or, for the floor, only save) one variant with `examples/pretrain.py`; its zero-shot figures."""
    run_pretrain_script(args, world_name, variant, seed, run_dir)
    return json.loads((run_dir / "eval_results.json").read_text())


def clip_action_targets(videos: list, clip_spans: torch.Tensor, classes: list[str] | None = None) -> tuple:
    """The action each clip shows at its centre ("none" between events) as class indices, clip by clip of `videos`
    (`clip_spans`: `[N, T, 2]`); `classes` default to the sorted labels found, and a label outside them is -1."""
    names = []
    for video, spans in zip(videos, clip_spans):
        for centre in spans.mean(-1).tolist():
            showing = [event.action for event in video.events if event.start <= centre < event.end]
            names.append(showing[0] if showing else "none")
    classes = classes or sorted(set(names))
    return torch.tensor([classes.index(name) if name in classes else -1 for name in names]), classes


def majority_rate(train_targets: torch.Tensor, test_targets: torch.Tensor) -> float:
    """The test accuracy of always answering the most frequent training class."""
    majority = Counter(train_targets.tolist()).most_common(1)[0][0]
    return (test_targets == majority).float().mean().item()


@torch.no_grad()
def action_probe(model, processor, world: SyntheticWorld, num_clips: int) -> dict:
    """A linear classifier of "which action does the clip show" (or none) on frozen clip features, trained on the
    training videos and scored on the test videos, against always answering the most frequent training label."""
    features, targets, classes = {}, {}, None
    for split in ("train", "test"):
        videos = world.videos(split)
        _, clip_embeds, clip_spans = encode_videos(
            model, processor, [video.video_id for video in videos], world.render, world.fps, num_clips
        )
        features[split] = clip_embeds.flatten(0, 1)
        targets[split], classes = clip_action_targets(videos, clip_spans, classes)
    with torch.enable_grad():
        torch.manual_seed(0)
        probe = torch.nn.Linear(features["train"].shape[1], len(classes))
        optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-4)
        for _ in range(300):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(probe(features["train"]), targets["train"]).backward()
            optimizer.step()
    predicted = probe(features["test"]).argmax(-1)
    return {
        "action_probe_accuracy": (predicted == targets["test"]).float().mean().item(),
        "action_probe_majority_rate": majority_rate(targets["train"], targets["test"]),
    }


def action_ceiling(args: AblationArguments, world_name: str, world: SyntheticWorld, run_dir: Path) -> dict:
    """What the pre-trained models' clip encoder can show of the actions at all: a new encoder of their size and
    initialisation (the `no_pretraining` model of seed 0) trained end to end with a linear head on the training
    videos' clip actions (cross-entropy, `args.action_ceiling_steps` steps of 16 videos), scored on the test videos
    like the action probe."""
    run_pretrain_script(args, world_name, "no_pretraining", 0, run_dir, "--eval_data", "none")
    model = LocVTPModel.from_pretrained(run_dir)
    processor = LocVTPProcessor.from_pretrained(run_dir)
    pixels, targets, classes = {}, {}, None
    for split in ("train", "test"):
        videos = world.videos(split)
        inputs = processor.video_processor(
            [world.render(video.video_id) for video in videos], video_fps=world.fps, num_clips=args.num_clips,
            return_tensors="pt",
        )  # fmt: skip
        pixels[split] = inputs["pixel_values_videos"]
        targets[split], classes = clip_action_targets(videos, inputs["clip_spans"], classes)
    torch.manual_seed(0)
    head = torch.nn.Linear(model.config.projection_dim, len(classes))
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-3, weight_decay=0.05)
    num_videos, per_video = len(pixels["train"]), args.num_clips
    model.train()
    for _ in range(args.action_ceiling_steps):
        videos = torch.randint(0, num_videos, (16,))
        clip_embeds = model.get_video_features(pixels["train"][videos]).clip_embeds
        clip_targets = targets["train"].view(num_videos, per_video)[videos].flatten()
        # the clip embeddings are unit vectors: a fixed scale lets the head's logits grow
        loss = torch.nn.functional.cross_entropy(head(10 * clip_embeds.flatten(0, 1)), clip_targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([
            head(10 * model.get_video_features(batch).clip_embeds.flatten(0, 1)).argmax(-1)
            for batch in pixels["test"].split(16)
        ])  # fmt: skip
    return {
        "action_ceiling_accuracy": (predicted == targets["test"]).float().mean().item(),
        "action_ceiling_train_loss": loss.item(),
        "action_probe_majority_rate": majority_rate(targets["train"], targets["test"]),
    }


@torch.no_grad()
def discovery_accuracy(model, processor, world: SyntheticWorld, split: str) -> dict:
    """
    On every two-sentence pair "A, then B" of `split` (with its exact span): the word each clip discovers (the
    model's own discovery, with its stop-word setting) is right when it occurs only in the sentence of the event the
    clip's centre lies in. Against the same rate for a discoverable word picked at random, and the share of picked
    words that are stop words.
    """
    stop_ids = set(stop_word_token_ids(processor.tokenizer))
    excluded = torch.tensor(model.config.discovery_excluded_token_ids or [], dtype=torch.long)
    separator = processor.tokenizer(CAPTION_SEPARATOR.strip(), add_special_tokens=False)["input_ids"]
    right, chance, stop, total = 0.0, 0.0, 0, 0
    for video in world.videos(split):
        frames = world.render(video)  # once per video, for all its pairs
        for first, second in zip(video.events, video.events[1:]):
            text = f"{first.sentence}{CAPTION_SEPARATOR}{second.sentence}"
            inputs = processor(
                videos=[frames], text=[text], spans=[(first.start, second.end)], video_fps=world.fps,
                return_tensors="pt",
            )  # fmt: skip
            clip_spans = inputs.pop("clip_spans")
            outputs = model(**inputs)
            ids = inputs["input_ids"][0]
            mask = outputs.word_mask[0] & ~torch.isin(ids, excluded)
            words_of_clip, _ = discover_correspondence(outputs.clip_embeds, outputs.word_embeds, mask[None], 1, 1)
            cut = next(i for i in range(len(ids)) if ids[i : i + len(separator)].tolist() == separator)
            parts = (set(ids[:cut].tolist()), set(ids[cut + len(separator) :].tolist()))
            candidates = ids[mask].tolist()
            for clip, centre in enumerate(clip_spans[0].mean(-1).tolist()):
                part = 0 if first.start <= centre < first.end else 1 if second.start <= centre < second.end else None
                if part is None:
                    continue
                own, other = parts[part], parts[1 - part]
                word = int(ids[words_of_clip[0, clip].nonzero()[0, 0]])
                right += word in own and word not in other
                chance += sum(c in own and c not in other for c in candidates) / len(candidates)
                stop += word in stop_ids
                total += 1
    return {
        "discovery_accuracy": right / max(total, 1),
        "discovery_random_rate": chance / max(total, 1),
        "discovery_stop_word_share": stop / max(total, 1),
        "discovery_clips": total,
    }


def grounding_heads(args: AblationArguments, world: SyntheticWorld, seed: int, run_dir: Path) -> dict:
    """2D-TAN heads on frozen clip features, trained on a share of the training queries, scored on the test ones."""
    processor = LocVTPProcessor.from_pretrained(run_dir)
    train_queries = world.grounding_dataset("train")
    test_queries = world.grounding_dataset("test")
    features = None
    results = {}
    for fraction in GROUNDING_FRACTIONS:
        torch.manual_seed(seed)  # the head's initial weights
        model = LocVTPForTemporalGrounding.from_pretrained(
            run_dir, grounding_hidden_size=args.grounding_hidden_size, grounding_num_conv_layers=2,
            grounding_conv_kernel_size=3, grounding_freeze_encoder=True,
        )  # fmt: skip
        model.freeze_towers(vision=True, text=True)
        if features is None:
            videos = {video.video_id: video.video_id for split in ("train", "test") for video in world.videos(split)}
            encoded = list(
                encode_clip_features(model, processor, videos, load_video=world.render, video_fps=world.fps)
            )
            failures = [found for found in encoded if isinstance(found, FailedVideo)]
            if failures:
                raise RuntimeError(f"Synthetic videos could not be encoded: {failures[:3]}")
            features = {found.video_id: found.features for found in encoded}
        count = max(1, round(fraction * len(train_queries)))
        subset = train_queries.shuffle(seed=seed).select(range(count))
        train_grounding_model(
            model, GroundingFeatureDataset(subset, features, processor, training=True), max_steps=args.grounding_steps,
            batch_size=args.grounding_batch_size, learning_rate=args.grounding_learning_rate,
            warmup_steps=args.grounding_steps // 10, seed=seed, progress=False,
        )  # fmt: skip
        test_set = GroundingFeatureDataset(test_queries, features, processor)
        evaluation = evaluate_grounding_model(model, processor, test_set)
        name = f"grounding_{round(fraction * 100)}%"
        for metric, value in evaluation.metrics.items():
            results[f"{name}_{metric}"] = value
        answers = Counter(
            (round(moments[0]["start"] / duration, 2), round(moments[0]["end"] / duration, 2))
            for moments, duration in zip(evaluation.predictions, test_queries["duration"])
        )
        results[f"{name}_top_answer_share"] = answers.most_common(1)[0][1] / len(test_queries)
        results[f"{name}_collapsed"] = results[f"{name}_top_answer_share"] >= 0.5
    return results


def measure(args: AblationArguments, world: SyntheticWorld, run_dir: Path) -> dict:
    """The head-free figures of one pre-trained model (per-query values included for the bootstrap)."""
    model = LocVTPModel.from_pretrained(run_dir).eval()
    processor = LocVTPProcessor.from_pretrained(run_dir)
    results = {}
    for split, prefix in (("validation", "validation_"), ("test", "")):
        figures = localization_evaluation(
            model, processor, world.grounding_queries(split), args.num_clips, world.render, world.fps, per_query=True
        )
        per_query = figures.pop("per_query")
        results.update({prefix + name: value for name, value in figures.items()})
        if split == "test":
            results["per_query"] = per_query
    results.update(action_probe(model, processor, world, args.num_clips))
    results.update(discovery_accuracy(model, processor, world, "test"))
    return results


# ---- statistics ------------------------------------------------------------------------------------------------------


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % t-interval (0 for a single value)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, 0.0
    degrees = len(values) - 1
    # between tabulated degrees of freedom, the next smaller one's (wider) quantile
    quantile = T_QUANTILES_95[max(key for key in T_QUANTILES_95 if key <= degrees)] if degrees <= 30 else 1.960
    return mean, quantile * statistics.stdev(values) / math.sqrt(len(values))


def bootstrap_difference(per_seed_a: list[list[float]], per_seed_b: list[list[float]], samples: int) -> list[float]:
    """95 % percentile interval of the mean per-query difference a - b (each averaged over the paired seeds), with
    queries resampled; queries with an undefined value (NaN: the moment covers all clips or none) are left out."""
    difference = (np.array(per_seed_a, dtype=float) - np.array(per_seed_b, dtype=float)).mean(0)
    difference = difference[~np.isnan(difference)]
    rng = np.random.default_rng(0)
    means = difference[rng.integers(0, len(difference), (samples, len(difference)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def summarize(args: AblationArguments, runs: dict) -> dict:
    """Per world and variant: mean and 95 % interval of each figure, the paired difference with the baseline and, for
    the localization figures, the per-query bootstrap interval of that difference."""
    summary = {}
    for world_name, by_variant in runs.items():
        summary[world_name] = {}
        baseline = by_variant.get(BASELINE)
        for variant, by_seed in by_variant.items():
            entry = {}
            for key, _ in FIGURES:
                values = [run[key] for run in by_seed.values() if key in run]
                if not values:
                    continue
                entry[key] = {"mean_ci95": interval(values)}
                seeds = [seed for seed in by_seed if baseline and seed in baseline and key in baseline[seed]]
                if baseline is not None and variant != BASELINE and seeds:
                    differences = [by_seed[seed][key] - baseline[seed][key] for seed in seeds]
                    entry[key]["paired_difference_ci95"] = interval(differences)
                    entry[key]["paired_seeds"] = seeds
                    if key in PER_QUERY:
                        per_query, threshold = PER_QUERY[key]

                        def values(runs_by_seed: dict) -> list[np.ndarray]:
                            per_seed = [np.array(runs_by_seed[seed]["per_query"][per_query], float) for seed in seeds]
                            return [(value >= threshold) * 1.0 for value in per_seed] if threshold else per_seed

                        entry[key]["bootstrap_difference_ci95"] = bootstrap_difference(
                            values(by_seed), values(baseline), args.bootstrap_samples
                        )
            summary[world_name][variant] = entry
    return summary


def markdown_tables(args: AblationArguments, runs: dict, summary: dict, ceilings: dict, minutes: float) -> str:
    """Per world: the figures (mean ± 95 % half-width), the paired differences with the baseline and the supervised
    action ceiling."""
    text = []
    for world_name, by_variant in summary.items():
        keys = [(key, title) for key, title in FIGURES if any(key in entry for entry in by_variant.values())]
        settings = ", ".join(f"{name}={value}" for name, value in WORLDS[world_name].items())
        seeds = sorted({seed for by_seed in runs[world_name].values() for seed in by_seed})
        text.append(f"### World `{world_name}` ({settings}), seeds {seeds}\n")
        text.append(f"| variant | {' | '.join(title for _, title in keys)} |")
        text.append(f"|---|{'---|' * len(keys)}")
        for variant, entry in by_variant.items():
            cells = [
                f"{entry[key]['mean_ci95'][0]:.3f} ± {entry[key]['mean_ci95'][1]:.3f}" if key in entry else "-"
                for key, _ in keys
            ]
            text.append(f"| {variant} | {' | '.join(cells)} |")
        text.append(f"\nPaired difference with `{BASELINE}` (same seeds), mean ± 95 % t half-width; "
                    "[per-query bootstrap 95 % interval]:\n")  # fmt: skip
        text.append(f"| variant | {' | '.join(title for _, title in keys)} |")
        text.append(f"|---|{'---|' * len(keys)}")
        for variant, entry in by_variant.items():
            if variant == BASELINE or not any("paired_difference_ci95" in entry.get(key, {}) for key, _ in keys):
                continue
            cells = []
            for key, _ in keys:
                if "paired_difference_ci95" not in entry.get(key, {}):
                    cells.append("-")
                    continue
                mean, half = entry[key]["paired_difference_ci95"]
                cell = f"{mean:+.3f} ± {half:.3f}"
                if "bootstrap_difference_ci95" in entry[key]:
                    low, high = entry[key]["bootstrap_difference_ci95"]
                    cell += f" [{low:+.3f}, {high:+.3f}]"
                cells.append(cell)
            text.append(f"| {variant} | {' | '.join(cells)} |")
        if world_name in ceilings:
            ceiling = ceilings[world_name]
            text.append(
                f"\nSupervised action ceiling (a new clip encoder trained on the clips' action labels, "
                f"{args.action_ceiling_steps} steps): {ceiling['action_ceiling_accuracy']:.3f}; majority class "
                f"{ceiling['action_probe_majority_rate']:.3f}."
            )
        text.append("")
    text.append(
        f"{args.max_steps} pre-training steps per variant (`examples/pretrain.py` defaults "
        f"otherwise), world seed {args.world_seed}, {args.world_test_videos} test videos; grounding heads: "
        f"{args.grounding_steps} steps on frozen clip features. The runs took {minutes:.0f} min of wall time in all.\n"
    )
    return "\n".join(text)


def main():
    (args,) = HfArgumentParser(AblationArguments, description=__doc__).parse_args_into_dataclasses()
    if args.quick:
        apply_quick(args)
    for name, chosen, known in (("variant", args.variants, VARIANTS), ("world", args.worlds, WORLDS)):
        unknown = set(chosen) - set(known)
        if unknown:
            raise ValueError(f"Unknown {name}(s) {sorted(unknown)}; choose among {list(known)}.")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    output_dir = Path(args.output_dir)

    runs = {world_name: {variant: {} for variant in args.variants} for world_name in args.worlds}
    ceilings, seconds = {}, 0.0
    for world_name in args.worlds:
        world = build_world(args, world_name)
        ceiling_dir = output_dir / world_name / "action_ceiling"
        if args.action_ceiling_steps and (not args.summarize_only or (ceiling_dir / "ceiling.json").exists()):
            settings = run_settings(args, world_name, "no_pretraining", 0)
            claim_run_folder(ceiling_dir, {**settings, "action_ceiling_steps": args.action_ceiling_steps})
            logger.info(f"{world_name} world, supervised action ceiling")
            ceilings[world_name] = cached(
                ceiling_dir, "ceiling.json", lambda: action_ceiling(args, world_name, world, ceiling_dir)
            )
            seconds += json.loads((ceiling_dir / "timing.json").read_text())["ceiling"]
        for seed in args.seeds:
            for variant in args.variants:
                run_dir = output_dir / world_name / variant / f"seed_{seed}"
                if args.summarize_only and not all((run_dir / name).exists() for name in RESULT_FILES):
                    continue
                claim_run_folder(run_dir, run_settings(args, world_name, variant, seed))
                logger.info(f"{world_name} world, {variant}, seed {seed}")
                results = cached(
                    run_dir, "eval_results.json", lambda: pretrain(args, world_name, variant, seed, run_dir)
                )
                results.update(cached(run_dir, "measures.json", lambda: measure(args, world, run_dir)))
                results.update(cached(run_dir, "grounding_results.json",
                                      lambda: grounding_heads(args, world, seed, run_dir)))  # fmt: skip
                runs[world_name][variant][seed] = results
                seconds += sum(json.loads((run_dir / "timing.json").read_text()).values())
                logger.info(", ".join(f"{key} {results[key]:.3f}" for key, _ in FIGURES if key in results))
    minutes = seconds / 60
    # with --summarize_only, a variant without a finished run has no row
    runs = {
        world_name: {variant: by_seed for variant, by_seed in by_variant.items() if by_seed}
        for world_name, by_variant in runs.items()
    }

    summary = summarize(args, runs)
    tables = markdown_tables(args, runs, summary, ceilings, minutes)
    print("\n" + tables)
    (output_dir / "ABLATION.md").write_text(tables)
    per_seed = {
        world_name: {
            variant: {
                seed: {key: value for key, value in run.items() if key != "per_query"} for seed, run in by_seed.items()
            }
            for variant, by_seed in by_variant.items()
        }
        for world_name, by_variant in runs.items()
    }
    (output_dir / "ablation_results.json").write_text(
        json.dumps(
            {"arguments": asdict(args), "runs": per_seed, "summary": summary, "action_ceiling": ceilings,
             "minutes": minutes},
            indent=2,
        )
        + "\n"
    )
    logger.info(f"Results in {output_dir / 'ablation_results.json'} and {output_dir / 'ABLATION.md'}")


if __name__ == "__main__":
    main()
