"""Fine-tune and evaluate LocVTP for temporal grounding (a 2D-TAN head) with Accelerate.

    accelerate launch examples/finetune_grounding.py                                   # new small model, synthetic
    accelerate launch examples/finetune_grounding.py --model_name_or_path outputs/pretrain  # after pretrain.py
    accelerate launch examples/finetune_grounding.py --dataset charades_sta --model_name_or_path CKPT \\
        --features_dir features/ --train_annotations charades_sta_train.txt --eval_annotations charades_sta_test.txt
    accelerate launch examples/finetune_grounding.py --help

The model is a `LocVTPForTemporalGrounding`: from a LocVTP checkpoint (a pre-training checkpoint gets a new head; a
grounding checkpoint keeps its head), with random weights in the checkpoint's architecture (`--random_encoder`, the
control for LocVTP features), or, without `--model_name_or_path`, a new model of `pretrain.py`'s default small size
with a word-level tokenizer over the queries.

Data: by default the built-in synthetic world's grounding queries (one per event), from raw videos, trained on the
training split and evaluated on the test split. `--dataset charades_sta|activitynet_captions|tacos|qvhighlights|didemo`
reads the benchmark's annotation files (see docs/grounding_data_and_metrics.md) and the clip features of their videos
from `--features_dir`, written by `examples/extract_features.py` with the same checkpoint (a folder or an .h5 file).
Queries whose video has no features are dropped and counted, as are the moments the annotation loaders clip or drop.

A step whose loss is NaN or infinite is skipped (no weight update, a warning naming the step); the run stops after
`--max_consecutive_nonfinite_steps` such steps in a row.

With the encoder frozen (`--freeze_encoder`, the default) each video's clip features are computed once (or read from
`--features_dir`) and only the head trains: the fast path. `--freeze_encoder false` also fine-tunes the text encoder
and, on the synthetic world's raw videos, the clip encoder (every step then encodes the clips of its videos).

Before and after training the model is evaluated (R@{1,5} at IoU {0.3, 0.5, 0.7} and mIoU of the top-1 moment; for
QVHighlights also R1@{0.5, 0.7} and mAP over IoU 0.5:0.95): the table is printed and written, with the data counts, to
`<output_dir>/grounding_results.json`; the model and processor are saved in `--output_dir`, and `--num_plots N` draws
N evaluation queries' moments into `<output_dir>/plots/`. See docs/temporal_grounding.md.

Arguments: the `GroundingArguments` dataclass below, parsed with `HfArgumentParser` by `pretrain.py`'s
`parse_arguments` (so `--config run.yaml` works too).
"""

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from pretrain import ModelArguments, new_processor, parse_arguments, small_model_config, word_tokenizer
from tqdm.contrib.logging import logging_redirect_tqdm

from locvtp_hf import LocVTPConfig, LocVTPForTemporalGrounding, LocVTPProcessor
from locvtp_hf.configuration_locvtp import default_pooling_counts
from locvtp_hf.grounding_datasets import GROUNDING_DATASETS, load_grounding_dataset
from locvtp_hf.grounding_features import ClipFeatureStore, model_fingerprint
from locvtp_hf.grounding_finetuning import (
    GroundingFeatureDataset,
    GroundingVideoDataset,
    clip_features_for_queries,
    compute_clip_features,
    evaluate_grounding_model,
    select_trainable_parameters,
    synthetic_grounding_queries,
    train_grounding_model,
)
from locvtp_hf.grounding_metrics import MAP_MAX_PREDICTIONS
from locvtp_hf.hub import push_to_hub
from locvtp_hf.model_card import create_model_card, eval_results_from_metrics
from locvtp_hf.synthetic_world import SyntheticWorld
from locvtp_hf.visualization import plot_moments


logger = logging.getLogger(__name__)

# The head a pre-training checkpoint or a new model gets unless the --grounding_* flags say otherwise: small enough to
# train in minutes on a CPU. 2D-TAN's Charades-STA head is --grounding_hidden_size 512 --grounding_num_conv_layers 8
# --grounding_conv_kernel_size 5 (and --grounding_num_positions 64 for ActivityNet Captions).
NEW_HEAD = {
    "grounding_num_positions": 16,
    "grounding_hidden_size": 64,
    "grounding_num_conv_layers": 2,
    "grounding_conv_kernel_size": 3,
}
# A new head's positions on the benchmarks whose videos are longer than Charades-STA's (2D-TAN's maps: 16 positions
# for Charades-STA, 64 for ActivityNet Captions), unless --grounding_num_positions is given.
DATASET_NUM_POSITIONS = {"activitynet_captions": 64}


@dataclass
class GroundingArguments:
    # model
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A LocVTP checkpoint (pre-training or grounding), folder or Hub id. Default: a new model."},
    )
    random_encoder: bool = field(
        default=False,
        metadata={"help": "Random weights in the checkpoint's architecture: the control for LocVTP features."},
    )
    freeze_encoder: bool = field(
        default=True,
        metadata={"help": "Train only the head, on clip features computed once. False: the towers train too."},
    )
    grounding_num_positions: int | None = field(
        default=None,
        metadata={"help": "Positions N of a new head's 2D map (default 16; 64 with --dataset activitynet_captions)."},
    )
    grounding_hidden_size: int | None = field(
        default=None, metadata={"help": "Width of a new head (default 64; 2D-TAN: 512)."}
    )
    grounding_num_conv_layers: int | None = field(
        default=None, metadata={"help": "Convolution layers of a new head (default 2; 2D-TAN: 8)."}
    )
    grounding_conv_kernel_size: int | None = field(
        default=None, metadata={"help": "Convolution kernel of a new head (default 3; 2D-TAN: 5)."}
    )
    # data
    dataset: str = field(default="synthetic", metadata={"help": f"'synthetic' or one of {GROUNDING_DATASETS}."})
    train_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the training set."})
    eval_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the evaluation set."})
    durations: str | None = field(
        default=None,
        metadata={"help": "charades_sta / didemo: video durations, a CSV with id and length (Charades_v1_*.csv)."},
    )
    features_dir: str | None = field(
        default=None, metadata={"help": "Clip features from examples/extract_features.py: a folder or an .h5 file."}
    )
    world_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world (as in pretrain.py)."})
    world_train_videos: int = field(default=400, metadata={"help": "Training videos of the synthetic world."})
    world_test_videos: int = field(default=100, metadata={"help": "Evaluation videos of the synthetic world."})
    max_text_length: int = field(default=64, metadata={"help": "Longer queries are truncated (a new model only)."})
    feature_batch_size: int = field(default=8, metadata={"help": "Videos per forward pass when caching features."})
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers that decode videos."})
    # training
    output_dir: str = field(default="outputs/finetune_grounding", metadata={"help": "Where the model goes."})
    max_steps: int = field(default=500, metadata={"help": "Optimizer steps to train for."})
    per_device_batch_size: int = field(default=32, metadata={"help": "(query, moment) pairs per process and step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (linear and conv weights)."})
    warmup_steps: int = field(default=50, metadata={"help": "Linear warmup steps before the cosine decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    max_consecutive_nonfinite_steps: int = field(
        default=10,
        metadata={"help": "Steps with a NaN or infinite loss are skipped; stop after this many in a row."},
    )
    mixed_precision: str | None = field(
        default=None, metadata={"help": "'no', 'fp16' or 'bf16'. Default: the accelerate launch config's."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of the new weights and the data order."})
    logging_steps: int = field(default=50, metadata={"help": "Log the loss every N steps."})
    # evaluation
    eval_batch_size: int = field(default=64, metadata={"help": "Queries per forward pass in evaluation."})
    top_k: int = field(default=5, metadata={"help": "Moments kept per query (QVHighlights' mAP keeps at least 10)."})
    nms_threshold: float = field(default=0.5, metadata={"help": "1-D NMS IoU threshold of the ranked moments."})
    iou_comparison: str = field(
        default=">=", metadata={"help": "'>=' (Moment-DETR and most work) or '>' (2D-TAN's code) at IoU thresholds."}
    )
    num_plots: int = field(default=0, metadata={"help": "Draw the moments of this many evaluation queries (PNG)."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model and processor to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id for --push_to_hub."})


def check_arguments(args: GroundingArguments) -> None:
    if args.dataset != "synthetic" and args.dataset not in GROUNDING_DATASETS:
        raise ValueError(f"--dataset {args.dataset!r} is neither 'synthetic' nor one of {GROUNDING_DATASETS}.")
    if args.dataset != "synthetic":
        needed = ("train_annotations", "eval_annotations", "features_dir")
        missing = [name for name in needed if not getattr(args, name)]
        if missing:
            raise ValueError(f"--dataset {args.dataset} needs " + ", ".join(f"--{name}" for name in missing) + ".")
        if not args.model_name_or_path:
            raise ValueError(
                f"--dataset {args.dataset} trains on precomputed features: give --model_name_or_path, the checkpoint "
                "that extracted them (its text encoder encodes the queries)."
            )
    elif args.features_dir:
        raise ValueError("--features_dir is for the benchmarks; the synthetic world is read from its raw videos.")
    if args.durations and args.dataset not in ("charades_sta", "didemo"):
        raise ValueError(f"--durations is for charades_sta and didemo; {args.dataset} annotations carry durations.")
    if args.random_encoder and not args.model_name_or_path:
        raise ValueError("--random_encoder needs --model_name_or_path, the checkpoint whose architecture to build.")
    if args.iou_comparison not in (">=", ">"):
        raise ValueError(f"--iou_comparison must be '>=' or '>', got {args.iou_comparison!r}.")
    if not 0 <= args.nms_threshold <= 1:
        raise ValueError(f"--nms_threshold must be in [0, 1], got {args.nms_threshold}.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id.")
    counts = (
        "max_steps", "per_device_batch_size", "logging_steps", "eval_batch_size", "top_k", "feature_batch_size",
        "max_consecutive_nonfinite_steps",
    )
    for name in counts:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1.")
    if args.num_plots < 0:
        raise ValueError(f"--num_plots must be 0 or more, got {args.num_plots}.")


def head_fields(args: GroundingArguments, config: LocVTPConfig | None = None) -> dict:
    """
    The head's config fields: those of a checkpoint's trained head (`config`) or `NEW_HEAD` (with the positions of
    `DATASET_NUM_POSITIONS` for --dataset), overridden by the --grounding_* flags given. A new number of positions gets
    2D-TAN's sparse layout for it.
    """
    fields = dict(NEW_HEAD) if config is None else {name: getattr(config, name) for name in NEW_HEAD}
    if config is None and args.grounding_num_positions is None and args.dataset in DATASET_NUM_POSITIONS:
        fields["grounding_num_positions"] = DATASET_NUM_POSITIONS[args.dataset]
        logger.info(
            f"--dataset {args.dataset}: the new head has {fields['grounding_num_positions']} positions (2D-TAN's map "
            "for it); --grounding_num_positions sets another number."
        )
    fields.update({name: getattr(args, name) for name in NEW_HEAD if getattr(args, name) is not None})
    if config is None or fields["grounding_num_positions"] != config.grounding_num_positions:
        fields["grounding_pooling_counts"] = default_pooling_counts(fields["grounding_num_positions"])
    return fields


def load_model(args: GroundingArguments, queries: list[str]) -> tuple[LocVTPForTemporalGrounding, LocVTPProcessor]:
    """The model and its processor, as --model_name_or_path and --random_encoder say (see the module docstring)."""
    if not args.model_name_or_path:
        tokenizer = word_tokenizer(queries)
        config = small_model_config(ModelArguments(), tokenizer, max_text_length=args.max_text_length)
        for name, value in head_fields(args).items():
            setattr(config, name, value)
        model = LocVTPForTemporalGrounding(config)
        return model, new_processor(model.config, tokenizer, args.max_text_length)

    processor = LocVTPProcessor.from_pretrained(args.model_name_or_path)
    config = LocVTPConfig.from_pretrained(args.model_name_or_path)
    has_head = "LocVTPForTemporalGrounding" in (config.architectures or [])
    overrides = [name for name in NEW_HEAD if getattr(args, name) is not None]
    if has_head and overrides and not args.random_encoder:
        raise ValueError(
            f"{args.model_name_or_path} is a grounding checkpoint with a trained head; "
            + ", ".join(f"--{name}" for name in overrides)
            + " would replace it. Drop them, or start from the pre-training checkpoint."
        )
    fields = head_fields(args, config if has_head else None)
    if args.random_encoder:
        for name, value in fields.items():
            setattr(config, name, value)
        return LocVTPForTemporalGrounding(config), processor
    return LocVTPForTemporalGrounding.from_pretrained(args.model_name_or_path, **fields), processor


def benchmark_queries(args: GroundingArguments) -> tuple:
    """The training and evaluation queries of a benchmark, with the loaders' reports."""
    loaded = {}
    for split, annotation_file in (("train", args.train_annotations), ("eval", args.eval_annotations)):
        loaded[split] = load_grounding_dataset(
            args.dataset, annotation_file, durations=args.durations, return_report=True
        )
        logger.info(f"{split}: {loaded[split][1].summary()}")
    return loaded["train"], loaded["eval"]


def keep_queries_with_videos(queries, video_ids: set[str]):
    return queries.select([index for index, video_id in enumerate(queries["video_id"]) if video_id in video_ids])


def print_table(before: dict, after: dict) -> None:
    print("\n| temporal grounding | before fine-tuning | after fine-tuning |\n|---|---|---|")
    for name, value in after.items():
        print(f"| {name} | {before[name]:.3f} | {value:.3f} |")


def save_plots(folder: Path, eval_queries, predictions: list, num_plots: int) -> list[Path]:
    """`num_plots` evaluation queries, spread over the set, drawn with `plot_moments`."""
    step = max(len(eval_queries) // num_plots, 1)
    paths = []
    for index in range(0, len(eval_queries), step)[:num_plots]:
        query = eval_queries[index]
        name = re.sub(r"[^\w.-]+", "_", query["query_id"])
        paths.append(
            plot_moments(
                folder / f"{len(paths):03d}_{name}.png",
                query["duration"],
                ground_truth=query["moments"],
                predictions=predictions[index],
                query=query["query"],
            )
        )
    return paths


def grounding_model_card(model, args: GroundingArguments, results: dict):
    """The Hub model card of the run: its data, the hyperparameters and the figures after fine-tuning."""
    if args.dataset == "synthetic":
        dataset_name = f"LocVTP synthetic world (seed {args.world_seed})"
        training_data = (
            f"The grounding queries of {args.world_train_videos} training videos of the built-in synthetic world of "
            f"`locvtp_hf.synthetic_world` (seed {args.world_seed}): one generated sentence per event, with its span."
        )
    else:
        dataset_name = args.dataset
        features = Path(args.features_dir).name
        training_data = f"`{Path(args.train_annotations).name}` ({args.dataset}), features `{features}`."
    return create_model_card(
        model,
        args.hub_model_id,
        training_data=training_data + f" {results['train_queries']} queries.",
        training_hyperparameters={
            "Optimizer steps": args.max_steps,
            "Batch per step (processes x (query, moment) pairs)": f"{results['num_processes']} x "
            f"{args.per_device_batch_size}",
            "Optimizer": f"AdamW, weight decay {args.weight_decay} on linear and convolution weights",
            "Learning rate": f"{args.learning_rate}, {args.warmup_steps} warm-up steps, cosine decay",
            "Encoder": "frozen (head trained on cached clip features)" if args.freeze_encoder else "fine-tuned",
            "Seed": args.seed,
        },
        eval_results=eval_results_from_metrics(
            results["after"],
            task_type="temporal-grounding",
            task_name="Temporal grounding",
            dataset_type="locvtp-synthetic-world" if args.dataset == "synthetic" else args.dataset,
            dataset_name=dataset_name,
            dataset_split="test" if args.dataset == "synthetic" else Path(args.eval_annotations).stem,
        ),
        evaluation_notes=(
            f"{results['eval_queries']} evaluation queries; the top {results['top_k']} moments after 1-D NMS at IoU "
            f"{args.nms_threshold}; a hit at IoU t means IoU {args.iou_comparison} t. One run, one seed."
        ),
        language="en" if args.dataset == "synthetic" else None,
    )


def check_feature_settings(store: ClipFeatureStore, args: GroundingArguments, model) -> None:
    """The features must have the model's dimension; features of another checkpoint are worth a warning."""
    feature_dim = store.settings.get("feature_dim")
    if feature_dim is not None and feature_dim != model.config.projection_dim:
        raise ValueError(
            f"The features in {args.features_dir} have {feature_dim} dimensions but {args.model_name_or_path} makes "
            f"{model.config.projection_dim}: extract them with this checkpoint (examples/extract_features.py)."
        )
    extracted_with = store.settings.get("model_sha256")
    if extracted_with is not None and extracted_with != model_fingerprint(model):
        logger.warning(
            f"The features in {args.features_dir} were extracted with another model (checkpoint "
            f"{store.settings.get('checkpoint')!r}) than {args.model_name_or_path}, which encodes the queries: extract "
            "them again with this checkpoint (examples/extract_features.py)."
        )



def stored_clip_features(args: GroundingArguments, model, query_sets: dict, results: dict) -> dict:
    """The clip features of the videos of every query set, from --features_dir; missing files and durations that
    disagree with the annotations are logged and counted in `results`."""
    store = ClipFeatureStore(args.features_dir)
    check_feature_settings(store, args, model)
    features, missing, mismatches = {}, {}, []
    for split, queries in query_sets.items():
        match = clip_features_for_queries(queries, store)
        features.update(match.features)
        missing[split] = match.missing_video_ids
        mismatches += match.duration_mismatches
        if match.missing_video_ids:
            logger.warning(
                f"{split}: {len(match.missing_video_ids)} of {len(set(queries['video_id']))} videos have no features "
                f"in {args.features_dir} (e.g. {match.missing_video_ids[:3]}); their queries are dropped"
            )
    if mismatches:
        logger.warning(
            f"{len(mismatches)} videos last longer or shorter in their features than in the annotations by more than "
            f"one clip, e.g. (video, annotated s, extracted s) {mismatches[:3]}; the annotated durations are used"
        )
    store.close()
    results["missing_feature_files"] = {split: len(ids) for split, ids in missing.items()}
    results["missing_feature_examples"] = {split: ids[:20] for split, ids in missing.items()}
    results["duration_mismatches"] = len(mismatches)
    return features


def main():
    (args,) = parse_arguments((GroundingArguments,), description=__doc__)
    check_arguments(args)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        # without an accelerator, several launched processes only form a (gloo) group when told they run on CPUs
        cpu=not torch.accelerator.is_available(),
        mixed_precision=args.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    set_seed(args.seed)
    results = {"dataset": args.dataset, "num_processes": accelerator.num_processes}

    # ---- queries ---------------------------------------------------------------------------------------------------
    if args.dataset == "synthetic":
        world = SyntheticWorld(
            seed=args.world_seed, num_train=args.world_train_videos, num_test=args.world_test_videos
        )
        train_queries = synthetic_grounding_queries(world, "train")
        eval_queries = synthetic_grounding_queries(world, "test")
    else:
        (train_queries, train_report), (eval_queries, eval_report) = benchmark_queries(args)
        results["annotations"] = {"train": asdict(train_report), "eval": asdict(eval_report)}
        for report in results["annotations"].values():
            report["dropped_query_ids"] = report["dropped_query_ids"][:20]

    # ---- model -----------------------------------------------------------------------------------------------------
    model, processor = load_model(args, [*train_queries["query"], *eval_queries["query"]])
    raw_videos = args.dataset == "synthetic"
    select_trainable_parameters(
        model, train_text_encoder=not args.freeze_encoder, train_clip_encoder=raw_videos and not args.freeze_encoder
    )
    model.to(accelerator.device)
    logger.info(
        f"{type(model).__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.3f}M trained; head of "
        f"{model.config.grounding_num_positions} positions"
    )

    # ---- videos: cached clip features, or raw videos when the clip encoder trains -----------------------------------
    if raw_videos and not args.freeze_encoder:
        videos = {video_id: video_id for video_id in {*train_queries["video_id"], *eval_queries["video_id"]}}
        train_set, eval_set = (
            GroundingVideoDataset(queries, videos, processor, world.render, world.fps, training=training)
            for queries, training in ((train_queries, True), (eval_queries, False))
        )
    else:
        if raw_videos:
            video_ids = sorted({*train_queries["video_id"], *eval_queries["video_id"]})
            with logging_redirect_tqdm():
                features, failures = compute_clip_features(
                    model, processor, {video_id: video_id for video_id in video_ids}, load_video=world.render,
                    video_fps=world.fps, batch_size=args.feature_batch_size, num_workers=args.num_workers,
                    progress=accelerator.is_local_main_process,
                )
            results["unreadable_videos"] = [failure.error for failure in failures]
        else:
            features = stored_clip_features(args, model, {"train": train_queries, "eval": eval_queries}, results)
        counts = {"train": len(train_queries), "eval": len(eval_queries)}
        train_queries = keep_queries_with_videos(train_queries, set(features))
        eval_queries = keep_queries_with_videos(eval_queries, set(features))
        results["queries_without_features"] = {
            "train": counts["train"] - len(train_queries), "eval": counts["eval"] - len(eval_queries)
        }
        for split, queries in (("train", train_queries), ("eval", eval_queries)):
            if len(queries) == 0:
                raise ValueError(
                    f"None of the {counts[split]} {split} queries has the clip features of its video: check that "
                    f"--features_dir {args.features_dir} was extracted from this data set's videos."
                )
        train_set = GroundingFeatureDataset(train_queries, features, processor, training=True)
        eval_set = GroundingFeatureDataset(eval_queries, features, processor)
    results.update(train_queries=len(train_queries), train_items=len(train_set), eval_queries=len(eval_queries))
    logger.info(
        f"{len(train_queries)} training queries ({len(train_set)} (query, moment) pairs), {len(eval_queries)} "
        f"evaluation queries ({args.dataset})"
    )

    # ---- evaluate, train, evaluate ---------------------------------------------------------------------------------
    top_k = max(args.top_k, MAP_MAX_PREDICTIONS) if args.dataset == "qvhighlights" else args.top_k

    def evaluate():
        return evaluate_grounding_model(
            model, processor, eval_set, batch_size=args.eval_batch_size, top_k=top_k,
            nms_threshold=args.nms_threshold, iou_comparison=args.iou_comparison,
            mean_average_precision=args.dataset == "qvhighlights", num_workers=args.num_workers,
        )

    before = evaluate() if accelerator.is_main_process else None
    with logging_redirect_tqdm():
        losses = train_grounding_model(
            model, train_set, max_steps=args.max_steps, batch_size=args.per_device_batch_size,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
            max_grad_norm=args.max_grad_norm, seed=args.seed, num_workers=args.num_workers,
            logging_steps=args.logging_steps, accelerator=accelerator,
            max_consecutive_nonfinite_steps=args.max_consecutive_nonfinite_steps,
        )

    # ---- save, report ----------------------------------------------------------------------------------------------
    if accelerator.is_main_process:
        after = evaluate()
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        results.update(
            before=before.metrics, after=after.metrics, steps=len(losses), first_loss=losses[0], last_loss=losses[-1],
            top_k=top_k,
            # shared on the Hub with the model: no folder of this machine
            arguments={
                name: Path(value).name if isinstance(value, str) and Path(value).is_absolute() else value
                for name, value in asdict(args).items()
            },
        )
        print_table(before.metrics, after.metrics)
        results_file = output_dir / "grounding_results.json"
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        if args.num_plots:
            plots = save_plots(output_dir / "plots", eval_queries, after.predictions, args.num_plots)
            logger.info(f"{len(plots)} plots in {output_dir / 'plots'}")
        logger.info(f"Model, processor and grounding_results.json saved in {output_dir}")
        if args.push_to_hub:
            card = grounding_model_card(model, args, results)
            commit = push_to_hub(args.hub_model_id, model, processor, card, extra_files=[results_file])
            logger.info(f"Pushed to {commit.commit_url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
