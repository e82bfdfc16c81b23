"""Fine-tune and evaluate LocVTP for temporal grounding (a 2D-TAN head) with Accelerate.

    accelerate launch examples/finetune_grounding.py                                   # new small model, synthetic
    accelerate launch examples/finetune_grounding.py --model_name_or_path outputs/pretrain  # after pretrain.py
    accelerate launch examples/finetune_grounding.py --dataset charades_sta --model_name_or_path CKPT \\
        --features_dir features/ --train_annotations charades_sta_train.txt --eval_annotations charades_sta_test.txt
    accelerate launch examples/finetune_grounding.py --help

The model is a `LocVTPForTemporalGrounding`: from a LocVTP checkpoint (a pre-training checkpoint gets a new head; a
grounding checkpoint keeps its head), with random weights in the checkpoint's architecture (`--random_encoder`, the
control for LocVTP features), or, without `--model_name_or_path` (or with `new`), a new small model (the
`ModelArguments` size, by default `pretrain.py`'s) with a word-level tokenizer over the queries.

Data: `--dataset synthetic` (default) reads the built-in synthetic world's grounding queries (one per event, the
`--world_*` options), from raw videos, trained on the training split and evaluated on the test split.
`--dataset charades_sta|activitynet_captions|tacos|qvhighlights|didemo` reads the benchmark's annotation files (see
docs/grounding_data_and_metrics.md) and the clip features of their videos from `--features_dir`, written by
`examples/extract_features.py` with the same checkpoint (a folder or an .h5 file). Queries whose video has no features
are dropped and counted, as are the moments the annotation loaders clip or drop.

A step whose loss is NaN or infinite is skipped (no weight update, a warning naming the step); the run stops after
`--max_consecutive_nonfinite_steps` such steps in a row. Checkpoints are written every `--checkpointing_steps` steps;
`--resume_from_checkpoint latest|PATH` continues a run to the same weights as an uninterrupted one.

Highlight detection: when the training queries carry highlight annotations (QVHighlights' `relevant_clip_ids` and
`saliency_scores`, or the synthetic world's, from how much of each 1-second clip the event covers), `--saliency auto`
(the default) gives the model a saliency head (`grounding_saliency_head`), trained jointly with the moments on one
target per clip (`locvtp_hf.grounding_metrics.saliency_targets`); `--saliency on` insists on it, `--saliency off`
trains moments only.

With the encoder frozen (`--freeze_encoder`, the default) each video's clip features are computed once (or read from
`--features_dir`) and only the head trains: the fast path. `--freeze_encoder false` also fine-tunes the text encoder
and, on the synthetic world's raw videos, the clip encoder (every step then encodes the clips of its videos).

Before and after training the model is evaluated (R@{1,5} at IoU {0.3, 0.5, 0.7} and mIoU of the top-1 moment; for
QVHighlights also R1@{0.5, 0.7} and mAP over IoU 0.5:0.95; when the evaluation queries have highlight annotations,
HL-mAP and HL-Hit1 at Fair / Good / VeryGood of the saliency head, of zero-shot saliency (`zero-shot HL-...`, the
cosine of each clip feature with the query) and of random scores (`random HL-...`, the chance level)): the table is
printed and written, with the data counts, to
`<output_dir>/grounding_results.json`; the model and processor are saved in `--output_dir`, and `--num_plots N` draws
N evaluation queries' moments into `<output_dir>/plots/`. See docs/temporal_grounding.md.

Arguments: the `GroundingArguments` dataclass below and the shared groups of `locvtp_hf.training`, parsed with
`HfArgumentParser` by its `parse_arguments` (so `--config run.yaml` works too).
"""

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from locvtp_hf import LocVTPConfig, LocVTPForTemporalGrounding, LocVTPProcessor
from locvtp_hf.encoding import FailedVideo, encode_clip_features
from locvtp_hf.grounding_datasets import GROUNDING_DATASETS, load_grounding_dataset
from locvtp_hf.grounding_features import ClipFeatureStore, model_fingerprint
from locvtp_hf.grounding_finetuning import (
    GroundingFeatureDataset,
    GroundingVideoDataset,
    clip_features_for_queries,
    evaluate_grounding_model,
    grounding_dataloader,
    grounding_loss,
)
from locvtp_hf.grounding_metrics import MAP_MAX_PREDICTIONS, QVHIGHLIGHTS_CLIP_SECONDS
from locvtp_hf.hub import push_to_hub
from locvtp_hf.model_card import create_model_card, eval_results_from_metrics
from locvtp_hf.moment_geometry import default_pooling_counts
from locvtp_hf.training import (
    ModelArguments,
    SyntheticWorldArguments,
    TrainingArguments,
    check_model_arguments,
    check_training_arguments,
    new_processor,
    parse_arguments,
    recorded_arguments,
    setup_accelerator,
    small_model_config,
    train,
    word_tokenizer,
)
from locvtp_hf.visualization import plot_moments


logger = logging.getLogger(__name__)

DEFAULTS = {
    "output_dir": "outputs/finetune_grounding",
    "max_steps": 500,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "warmup_steps": 50,
    "logging_steps": 50,
    "num_workers": 0,
}

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
# The data sets whose queries carry highlight annotations, for --saliency.
SALIENCY_DATASETS = ("synthetic", "qvhighlights")
SALIENCY_MODES = ("auto", "on", "off")


@dataclass
class GroundingArguments:
    # model
    random_encoder: bool = field(
        default=False,
        metadata={
            "help": "Random weights in the checkpoint's architecture: the control for LocVTP features (--dataset "
            "synthetic only)."
        },
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
    saliency: str = field(
        default="auto",
        metadata={"help": "Train a saliency head jointly with the moments: 'auto' (when the training queries have "
                  "highlight annotations: QVHighlights, the synthetic world), 'on' or 'off'."},
    )
    # data
    dataset: str = field(default="synthetic", metadata={"help": f"'synthetic' or one of {GROUNDING_DATASETS}."})
    train_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the training set."})
    eval_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the evaluation set."})
    durations: str | None = field(
        default=None,
        metadata={
            "help": "charades_sta / didemo: video durations, one CSV with id and length for both splits. Default for "
            "charades_sta: each annotation file's own Charades_v1_{train,test}.csv beside it (charades_sta_test.txt "
            "-> Charades_v1_test.csv), as the two splits' durations are in different files."
        },
    )
    features_dir: str | None = field(
        default=None, metadata={"help": "Clip features from examples/extract_features.py: a folder or an .h5 file."}
    )
    feature_batch_size: int = field(default=8, metadata={"help": "Videos per forward pass when caching features."})
    # evaluation
    eval_batch_size: int = field(default=64, metadata={"help": "Queries per forward pass in evaluation."})
    top_k: int = field(default=5, metadata={"help": "Moments kept per query (QVHighlights' mAP keeps at least 10)."})
    nms_threshold: float = field(default=0.5, metadata={"help": "1-D NMS IoU threshold of the ranked moments."})
    iou_comparison: str = field(
        default=">=", metadata={"help": "'>=' (Moment-DETR and most work) or '>' (2D-TAN's code) at IoU thresholds."}
    )
    num_plots: int = field(default=0, metadata={"help": "Draw the moments of this many evaluation queries (PNG)."})




def check_arguments(model_args: ModelArguments, args: GroundingArguments, train_args: TrainingArguments) -> None:
    """Clear errors for bad combinations of arguments, before any work."""
    check_model_arguments(model_args)
    check_training_arguments(train_args)
    if args.dataset != "synthetic" and args.dataset not in GROUNDING_DATASETS:
        raise ValueError(f"--dataset {args.dataset!r} is neither 'synthetic' nor one of {GROUNDING_DATASETS}.")
    if args.dataset != "synthetic":
        needed = ("train_annotations", "eval_annotations", "features_dir")
        missing = [name for name in needed if not getattr(args, name)]
        if missing:
            raise ValueError(f"--dataset {args.dataset} needs " + ", ".join(f"--{name}" for name in missing) + ".")
        if not model_args.checkpoint:
            raise ValueError(
                f"--dataset {args.dataset} trains on precomputed features: give --model_name_or_path, the checkpoint "
                "that extracted them (its text encoder encodes the queries)."
            )
        if args.random_encoder:
            raise ValueError(
                f"--random_encoder is not a control on --dataset {args.dataset}: its clip features come from "
                "--features_dir, extracted by a trained model, so only the text encoder would be random. Run the "
                "control on the synthetic world (--dataset synthetic), whose clip features the model computes."
            )
    elif args.features_dir:
        raise ValueError("--features_dir is for the benchmarks; the synthetic world is read from its raw videos.")
    if args.durations and args.dataset not in ("charades_sta", "didemo"):
        raise ValueError(f"--durations is for charades_sta and didemo; {args.dataset} annotations carry durations.")
    if args.random_encoder and not model_args.checkpoint:
        raise ValueError("--random_encoder needs --model_name_or_path, the checkpoint whose architecture to build.")
    if args.iou_comparison not in (">=", ">"):
        raise ValueError(f"--iou_comparison must be '>=' or '>', got {args.iou_comparison!r}.")
    if not 0 <= args.nms_threshold <= 1:
        raise ValueError(f"--nms_threshold must be in [0, 1], got {args.nms_threshold}.")
    for name in ("eval_batch_size", "top_k", "feature_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1.")
    if args.num_plots < 0:
        raise ValueError(f"--num_plots must be 0 or more, got {args.num_plots}.")
    if args.saliency not in SALIENCY_MODES:
        raise ValueError(f"--saliency must be one of {SALIENCY_MODES}, got {args.saliency!r}.")
    if args.saliency == "on" and args.dataset not in SALIENCY_DATASETS:
        raise ValueError(
            f"--saliency on needs highlight annotations, which only {SALIENCY_DATASETS} have; {args.dataset} has none."
        )


def trains_saliency(args: GroundingArguments, train_queries) -> bool:
    """Whether the run trains a saliency head: --saliency on, or auto with highlight annotations in the training
    queries."""
    annotated = "saliency_scores" in train_queries.column_names and any(
        scores is not None for scores in train_queries["saliency_scores"]
    )
    if args.saliency == "on" and not annotated:
        raise ValueError(
            "--saliency on, but no training query has highlight annotations (relevant_clip_ids and saliency_scores)."
        )
    return args.saliency == "on" or (args.saliency == "auto" and annotated)


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


def load_model(
    model_args: ModelArguments, args: GroundingArguments, queries: list[str], saliency: bool
) -> tuple[LocVTPForTemporalGrounding, LocVTPProcessor]:
    """
    The model and its processor, as --model_name_or_path and --random_encoder say (see the module docstring), with a
    saliency head when `saliency` (a new one, unless the checkpoint has one) or the checkpoint has one.
    """
    checkpoint = model_args.checkpoint
    if checkpoint is None:
        tokenizer = word_tokenizer(queries)
        config = small_model_config(model_args, tokenizer, **head_fields(args), grounding_saliency_head=saliency)
        model = LocVTPForTemporalGrounding(config)
        return model, new_processor(model.config, tokenizer, model_args.max_text_length)

    processor = LocVTPProcessor.from_pretrained(checkpoint)
    config = LocVTPConfig.from_pretrained(checkpoint)
    has_head = "LocVTPForTemporalGrounding" in (config.architectures or [])
    overrides = [name for name in NEW_HEAD if getattr(args, name) is not None]
    if has_head and overrides and not args.random_encoder:
        raise ValueError(
            f"{checkpoint} is a grounding checkpoint with a trained head; "
            + ", ".join(f"--{name}" for name in overrides)
            + " would replace it. Drop them, or start from the pre-training checkpoint."
        )
    fields = head_fields(args, config if has_head else None)
    fields["grounding_saliency_head"] = saliency or config.grounding_saliency_head
    if args.random_encoder:
        for name, value in fields.items():
            setattr(config, name, value)
        return LocVTPForTemporalGrounding(config), processor
    return LocVTPForTemporalGrounding.from_pretrained(checkpoint, **fields), processor


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


def save_plots(folder: Path, eval_queries, evaluation, num_plots: int, clip_seconds: float) -> list[Path]:
    """`num_plots` evaluation queries, spread over the set, drawn with `plot_moments` (with the saliency head's score
    of each `clip_seconds` annotation clip under the timeline, when the model has the head)."""
    step = max(len(eval_queries) // num_plots, 1)
    paths = []
    for index in range(0, len(eval_queries), step)[:num_plots]:
        query = eval_queries[index]
        name = re.sub(r"[^\w.-]+", "_", query["query_id"])
        saliency = None
        if evaluation.saliency_predictions is not None:
            scores = evaluation.saliency_predictions[index]
            times = [[clip * clip_seconds, (clip + 1) * clip_seconds] for clip in range(len(scores))]
            saliency = {"times": times, "scores": scores}
        paths.append(
            plot_moments(
                folder / f"{len(paths):03d}_{name}.png",
                query["duration"],
                ground_truth=query["moments"],
                predictions=evaluation.predictions[index],
                query=query["query"],
                saliency=saliency,
            )
        )
    return paths


def grounding_model_card(
    model, args: GroundingArguments, world_args: SyntheticWorldArguments, train_args: TrainingArguments, results: dict
):
    """The Hub model card of the run: its data, the hyperparameters and the figures after fine-tuning."""
    if args.dataset == "synthetic":
        dataset_name = f"LocVTP synthetic world (seed {world_args.world_seed})"
        training_data = (
            f"The grounding queries of {world_args.world_train_videos} training videos of the built-in synthetic "
            f"world of `locvtp_hf.synthetic` (seed {world_args.world_seed}): one generated sentence per event, with "
            "its span."
        )
    else:
        dataset_name = args.dataset
        features = Path(args.features_dir).name
        training_data = f"`{Path(args.train_annotations).name}` ({args.dataset}), features `{features}`."
    return create_model_card(
        model,
        train_args.hub_model_id,
        training_data=training_data + f" {results['train_queries']} queries.",
        training_hyperparameters={
            "Optimizer steps": train_args.max_steps,
            "Batch per step (processes x (query, moment) pairs)": f"{results['num_processes']} x "
            f"{train_args.per_device_batch_size}",
            "Optimizer": f"AdamW, weight decay {train_args.weight_decay} on linear and convolution weights",
            "Learning rate": f"{train_args.learning_rate}, {train_args.warmup_steps} warm-up steps, cosine decay",
            "Encoder": "frozen (head trained on cached clip features)" if args.freeze_encoder else "fine-tuned",
            "Saliency head": f"trained jointly, loss weight {model.config.grounding_saliency_loss_weight}"
            if results["saliency"] else "not trained",
            "Seed": train_args.seed,
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
            f"{args.nms_threshold}; a hit at IoU t means IoU {args.iou_comparison} t."
            + (
                f" Highlight detection (HL-mAP, HL-Hit1, QVHighlights' definitions) over "
                f"{results['saliency_clip_seconds']:g}-second clips: of the saliency head, of zero-shot saliency "
                "(`zero-shot HL-*`: the cosine of each clip feature with the query) and of random scores "
                "(`random HL-*`: the chance level)."
                if any(name.startswith("random HL-") for name in results["after"]) else ""
            )
            + " One run, one seed."
        ),
        language="en" if args.dataset == "synthetic" else None,
    )


def check_feature_settings(store: ClipFeatureStore, args: GroundingArguments, model, checkpoint: str) -> None:
    """The features must have the model's dimension; features of another checkpoint are worth a warning."""
    feature_dim = store.settings.get("feature_dim")
    if feature_dim is not None and feature_dim != model.config.projection_dim:
        raise ValueError(
            f"The features in {args.features_dir} have {feature_dim} dimensions but {checkpoint} makes "
            f"{model.config.projection_dim}: extract them with this checkpoint (examples/extract_features.py)."
        )
    extracted_with = store.settings.get("model_sha256")
    if extracted_with is not None and extracted_with != model_fingerprint(model):
        logger.warning(
            f"The features in {args.features_dir} were extracted with another model (checkpoint "
            f"{store.settings.get('checkpoint')!r}) than {checkpoint}, which encodes the queries: extract "
            "them again with this checkpoint (examples/extract_features.py)."
        )


def stored_clip_features(
    args: GroundingArguments, checkpoint: str, model, query_sets: dict, results: dict
) -> dict:
    """The clip features of the videos of every query set, from --features_dir; missing files and durations that
    disagree with the annotations are logged and counted in `results`."""
    store = ClipFeatureStore(args.features_dir)
    check_feature_settings(store, args, model, checkpoint)
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
    model_args, args, world_args, train_args = parse_arguments(
        (ModelArguments, GroundingArguments, SyntheticWorldArguments, TrainingArguments),
        description=__doc__,
        defaults=DEFAULTS,
    )
    check_arguments(model_args, args, train_args)
    output_dir = Path(train_args.output_dir)
    accelerator = setup_accelerator(train_args)
    results = {"dataset": args.dataset, "num_processes": accelerator.num_processes}

    # ---- queries ---------------------------------------------------------------------------------------------------
    world = world_args.build() if args.dataset == "synthetic" else None
    if world is not None:
        train_queries = world.grounding_dataset("train")
        eval_queries = world.grounding_dataset("test")
    else:
        (train_queries, train_report), (eval_queries, eval_report) = benchmark_queries(args)
        results["annotations"] = {"train": asdict(train_report), "eval": asdict(eval_report)}
        for report in results["annotations"].values():
            report["dropped_query_ids"] = report["dropped_query_ids"][:20]

    saliency = trains_saliency(args, train_queries)
    saliency_clip_seconds = world.saliency_clip_seconds if world is not None else QVHIGHLIGHTS_CLIP_SECONDS
    results.update(saliency=saliency, saliency_clip_seconds=saliency_clip_seconds)

    # ---- model -----------------------------------------------------------------------------------------------------
    model, processor = load_model(model_args, args, [*train_queries["query"], *eval_queries["query"]], saliency)
    raw_videos = world is not None
    model.freeze_towers(vision=args.freeze_encoder or not raw_videos, text=args.freeze_encoder)
    model.to(accelerator.device)
    logger.info(
        f"{type(model).__name__}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.3f}M trained; head of "
        f"{model.config.grounding_num_positions} positions"
        + (", saliency head trained jointly" if saliency else "")
    )

    # ---- videos: cached clip features, or raw videos when the clip encoder trains -----------------------------------
    if raw_videos and not args.freeze_encoder:
        videos = {video_id: video_id for video_id in {*train_queries["video_id"], *eval_queries["video_id"]}}
        train_set, eval_set = (
            GroundingVideoDataset(
                queries, videos, processor, world.render, world.fps, training=training,
                saliency_labels=saliency and training, saliency_clip_seconds=saliency_clip_seconds,
            )
            for queries, training in ((train_queries, True), (eval_queries, False))
        )
    else:
        if raw_videos:
            video_ids = sorted({*train_queries["video_id"], *eval_queries["video_id"]})
            with logging_redirect_tqdm():
                encoded = list(
                    encode_clip_features(
                        model,
                        processor,
                        {video_id: video_id for video_id in video_ids},
                        load_video=world.render,
                        video_fps=world.fps,
                        batch_size=args.feature_batch_size,
                        num_workers=train_args.num_workers,
                        progress_bar=accelerator.is_local_main_process,
                    )
                )
            features = {found.video_id: found.features for found in encoded if not isinstance(found, FailedVideo)}
            results["unreadable_videos"] = [found.error for found in encoded if isinstance(found, FailedVideo)]
        else:
            queries = {"train": train_queries, "eval": eval_queries}
            features = stored_clip_features(args, model_args.checkpoint, model, queries, results)
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
        train_set = GroundingFeatureDataset(
            train_queries, features, processor, training=True, saliency_labels=saliency,
            saliency_clip_seconds=saliency_clip_seconds,
        )
        eval_set = GroundingFeatureDataset(
            eval_queries, features, processor, saliency_clip_seconds=saliency_clip_seconds
        )
    results.update(train_queries=len(train_queries), train_items=len(train_set), eval_queries=len(eval_queries))
    logger.info(
        f"{len(train_queries)} training queries ({len(train_set)} (query, moment) pairs), {len(eval_queries)} "
        f"evaluation queries ({args.dataset})"
    )

    # ---- evaluate, train, evaluate ---------------------------------------------------------------------------------
    top_k = max(args.top_k, MAP_MAX_PREDICTIONS) if args.dataset == "qvhighlights" else args.top_k

    def evaluate(trained: LocVTPForTemporalGrounding):
        return evaluate_grounding_model(
            trained, processor, eval_set, batch_size=args.eval_batch_size, top_k=top_k,
            nms_threshold=args.nms_threshold, iou_comparison=args.iou_comparison,
            mean_average_precision=args.dataset == "qvhighlights", num_workers=train_args.num_workers,
            random_seed=train_args.seed,
        )

    before = evaluate(model) if accelerator.is_main_process else None
    run_arguments = recorded_arguments((model_args, args, world_args, train_args), accelerator.num_processes)
    result = train(
        accelerator,
        model,
        grounding_dataloader(train_set, train_args.per_device_batch_size, train_args.seed, train_args.num_workers),
        grounding_loss,
        train_args,
        evaluate=lambda trained: evaluate(trained).metrics,
        run_arguments=run_arguments,
        tracker_project="locvtp-finetune-grounding",
    )

    # ---- save, report ----------------------------------------------------------------------------------------------
    if accelerator.is_main_process:
        after = evaluate(model)
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
        results.update(
            before=before.metrics,
            after=after.metrics,
            steps=result.completed_steps,
            first_loss=result.losses[0] if result.losses else None,
            last_loss=result.losses[-1] if result.losses else None,
            top_k=top_k,
            # shared on the Hub with the model: no folder of this machine
            arguments={
                name: Path(value).name if isinstance(value, str) and Path(value).is_absolute() else value
                for name, value in run_arguments.items()
            },
        )
        print_table(before.metrics, after.metrics)
        results_file = output_dir / "grounding_results.json"
        results_file.write_text(json.dumps(results, indent=2) + "\n")
        if args.num_plots:
            plots = save_plots(output_dir / "plots", eval_queries, after, args.num_plots, saliency_clip_seconds)
            logger.info(f"{len(plots)} plots in {output_dir / 'plots'}")
        logger.info(f"Model, processor and grounding_results.json saved in {output_dir}")
        if train_args.push_to_hub:
            card = grounding_model_card(model, args, world_args, train_args, results)
            commit = push_to_hub(train_args.hub_model_id, model, processor, card, extra_files=[results_file])
            logger.info(f"Pushed to {commit.commit_url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
