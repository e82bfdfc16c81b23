"""Fine-tune LocVTP for text-video retrieval with Accelerate, evaluating before and after.

    accelerate launch examples/finetune_retrieval.py --model_name_or_path outputs/pretrain  # pretrain.py's model
    accelerate launch examples/finetune_retrieval.py --model_name_or_path new       # a new small model instead
    accelerate launch examples/finetune_retrieval.py --dataset msrvtt --train_annotations MSRVTT_data.json \\
        --train_video_ids MSRVTT_train.9k.csv --eval_annotations MSRVTT_JSFUSION_test.csv --video_dir videos \\
        --model_name_or_path CHECKPOINT
    accelerate launch examples/finetune_retrieval.py --help

The model is a `LocVTPForRetrieval`: `--model_name_or_path`, a LocVTP checkpoint (pre-training or retrieval) with its
processor, or `new`: a new small model (the `ModelArguments` size, by default `pretrain.py`'s) with a word-level
tokenizer over the captions. It trains with the symmetric InfoNCE loss over the global batch (all processes) on the
retrieval score, each video once per epoch with one of its captions; a step whose loss is NaN or infinite is skipped
(no weight update, a warning), and the run stops after `--max_consecutive_nonfinite_steps` such steps in a row.
Checkpoints are written every `--checkpointing_steps` steps; `--resume_from_checkpoint latest|PATH` continues a run
to the same weights as an uninterrupted one. Before and after training the model is evaluated on the evaluation set
(text-to-video and video-to-text R@1/5/10, median and mean rank; see docs/retrieval.md); both tables are printed and
written to `<output_dir>/retrieval_results.json`, and the model and processor are saved in `--output_dir`.

Data: `--dataset synthetic` (default) reads the built-in synthetic world (the `--world_*` options); the other
`--dataset` names read their annotation files and videos.

Arguments: the `RetrievalArguments` dataclass below and the shared groups of `locvtp_hf.training`, parsed with
`HfArgumentParser` by its `parse_arguments` (so `--config run.yaml` works too).
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from locvtp_hf import LocVTPForRetrieval, LocVTPProcessor
from locvtp_hf.data import VideoTextCollator, VideoTextPairDataset
from locvtp_hf.evaluation import retrieval_evaluation
from locvtp_hf.hub import push_to_hub
from locvtp_hf.model_card import create_model_card, eval_results_from_metrics
from locvtp_hf.retrieval_datasets import DATASET_NAMES, OneCaptionPerVideo, load_retrieval_dataset
from locvtp_hf.retrieval_metrics import RENORMALIZATIONS
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


logger = logging.getLogger(__name__)

DEFAULTS = {"output_dir": "outputs/finetune_retrieval", "max_steps": 300, "learning_rate": 2e-4, "warmup_steps": 30}


@dataclass
class RetrievalArguments:
    retrieval_fusion_weight: float | None = field(
        default=None,
        metadata={"help": "Weight in [0, 1] of the fine-grained clip-word score. Default: the checkpoint's (0)."},
    )
    # data
    dataset: str = field(default="synthetic", metadata={"help": f"One of {DATASET_NAMES}."})
    train_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the training set."})
    eval_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the evaluation set."})
    video_dir: str | None = field(default=None, metadata={"help": "Folder of the videos of both sets."})
    extension: str | None = field(
        default=None,
        metadata={
            "help": "Extension of the video files of msrvtt, didemo and activitynet, e.g. .webm for an ActivityNet "
            "download or .mp4 for re-encoded DiDeMo videos (default: the reader's own: .mp4, none, .mp4)."
        },
    )
    train_video_ids: str | None = field(
        default=None, metadata={"help": "MSR-VTT: the training videos, e.g. MSRVTT_train.9k.csv."}
    )
    # evaluation
    eval_batch_size: int = field(default=16, metadata={"help": "Videos per forward pass in evaluation."})
    renormalization: str | None = field(
        default=None, metadata={"help": f"Also report metrics after {RENORMALIZATIONS} re-normalisation."}
    )
    renormalization_temperature: float = field(default=0.01, metadata={"help": "Its softmax temperature."})


def check_arguments(model_args: ModelArguments, args: RetrievalArguments, train_args: TrainingArguments) -> None:
    """Clear errors for bad combinations of arguments, before any work."""
    if model_args.model_name_or_path is None:
        raise ValueError(
            "Give --model_name_or_path: a LocVTP checkpoint, folder or Hub id (examples/pretrain.py saves its model "
            "in its --output_dir, outputs/pretrain by default), or 'new' for a new small model."
        )
    check_model_arguments(model_args)
    check_training_arguments(train_args)
    if args.dataset not in DATASET_NAMES:
        raise ValueError(f"--dataset {args.dataset!r} is not one of {DATASET_NAMES}.")
    if args.dataset != "synthetic" and not (args.train_annotations and args.eval_annotations):
        raise ValueError(f"--dataset {args.dataset} needs --train_annotations and --eval_annotations.")
    if args.renormalization is not None and args.renormalization not in RENORMALIZATIONS:
        raise ValueError(f"--renormalization must be one of {RENORMALIZATIONS}, got {args.renormalization!r}.")
    if args.retrieval_fusion_weight is not None and not 0 <= args.retrieval_fusion_weight <= 1:
        raise ValueError(f"--retrieval_fusion_weight must be in [0, 1], got {args.retrieval_fusion_weight}.")
    if args.eval_batch_size < 1:
        raise ValueError("--eval_batch_size must be at least 1.")


def load_model(
    model_args: ModelArguments, args: RetrievalArguments, captions: list[str]
) -> tuple[LocVTPForRetrieval, LocVTPProcessor]:
    """The checkpoint and its processor, or a new small model with a word-level tokenizer over `captions`."""
    overrides = {}
    if args.retrieval_fusion_weight is not None:
        overrides["retrieval_fusion_weight"] = args.retrieval_fusion_weight
    if model_args.checkpoint is not None:
        logger.info(f"Fine-tuning {model_args.checkpoint}")
        model = LocVTPForRetrieval.from_pretrained(model_args.checkpoint, **overrides)
        return model, LocVTPProcessor.from_pretrained(model_args.checkpoint)
    logger.info("Fine-tuning a new small model (no checkpoint)")
    tokenizer = word_tokenizer(captions)
    model = LocVTPForRetrieval(small_model_config(model_args, tokenizer, **overrides))
    return model, new_processor(model.config, tokenizer, model_args.max_text_length)


def retrieval_loss(model, batch: dict, step) -> dict:
    """The loss function of the training loop: the symmetric InfoNCE loss of the batch's (video, caption) pairs."""
    return {"loss": model(**batch, return_loss=True).loss}


def retrieval_model_card(
    model, args: RetrievalArguments, world_args, train_args, accelerator, num_train_videos: int, results: dict
):
    """The Hub model card of the run: its data, hyperparameters and the fine-tuned evaluation figures."""
    if args.dataset == "synthetic":
        training_data = (
            f"The video-level captions of the built-in synthetic video-text world of `locvtp_hf.synthetic` "
            f"(seed {world_args.world_seed}): {num_train_videos} training videos"
        )
        dataset_name = f"LocVTP synthetic world (seed {world_args.world_seed}), held-out videos"
    else:
        training_data = f"{args.dataset}: `{Path(args.train_annotations).name}`, {num_train_videos} videos"
        dataset_name = f"{args.dataset} (`{Path(args.eval_annotations).name}`)"
    shown = ("text_to_video_R@1", "text_to_video_R@5", "text_to_video_R@10", "video_to_text_R@1")
    return create_model_card(
        model,
        train_args.hub_model_id,
        training_data=training_data + ", each video once per epoch with one of its captions.",
        training_hyperparameters={
            "Optimizer steps": train_args.max_steps,
            "Contrastive batch (processes x batch)": (
                f"{accelerator.num_processes} x {train_args.per_device_batch_size}"
            ),
            "Optimizer": f"AdamW, weight decay {train_args.weight_decay} on linear and convolution weights",
            "Learning rate": f"{train_args.learning_rate}, {train_args.warmup_steps} warm-up steps, cosine decay",
            "Gradient clipping (max norm)": train_args.max_grad_norm,
            "Mixed precision": accelerator.mixed_precision,
            "Seed": train_args.seed,
        },
        eval_results=eval_results_from_metrics(
            {name: results[name] for name in shown},
            task_type="text-to-video-retrieval",
            task_name="Text-video retrieval",
            dataset_type=f"locvtp-{args.dataset}",
            dataset_name=dataset_name,
            dataset_split="test" if args.dataset == "synthetic" else None,
            metric_names={name: name.replace("_", " ") for name in shown},
        ),
        evaluation_notes="R@k: the fraction of queries whose video (or, video to text, one of whose captions) is "
        "among the k best; ties count against the query (see the package's docs/retrieval.md).",
    )


def print_table(before: dict, after: dict) -> None:
    print("\n| retrieval | before fine-tuning | after fine-tuning |\n|---|---|---|")
    for name, value in after.items():
        cell = "{:.3f}" if isinstance(value, float) else "{}"
        print(f"| {name} | {cell.format(before[name])} | {cell.format(value)} |")


def main():
    model_args, args, world_args, train_args = parse_arguments(
        (ModelArguments, RetrievalArguments, SyntheticWorldArguments, TrainingArguments),
        description=__doc__,
        defaults=DEFAULTS,
    )
    check_arguments(model_args, args, train_args)
    output_dir = Path(train_args.output_dir)
    accelerator = setup_accelerator(train_args)

    # ---- data ------------------------------------------------------------------------------------------------------
    world = world_args.build() if args.dataset == "synthetic" else None
    load_video, video_fps = (world.render, world.fps) if world is not None else (None, None)
    train_set = load_retrieval_dataset(
        args.dataset, args.train_annotations, args.video_dir, args.train_video_ids, world=world, split="train",
        extension=args.extension,
    )
    eval_set = load_retrieval_dataset(
        args.dataset, args.eval_annotations, args.video_dir, world=world, split="test", extension=args.extension
    )
    logger.info(f"{len(train_set)} training videos, {len(eval_set)} evaluation videos ({args.dataset})")

    # ---- model -----------------------------------------------------------------------------------------------------
    model, processor = load_model(
        model_args,
        args,
        [caption for captions in (*train_set["captions"], *eval_set["captions"]) for caption in captions],
    )

    def evaluate(unwrapped: LocVTPForRetrieval) -> dict:
        """The retrieval figures on the evaluation set; its unreadable videos are left out with their captions (as
        `evaluate_retrieval.py` does), counted and named in a warning."""
        metrics, unreadable = retrieval_evaluation(
            unwrapped,
            processor,
            eval_set,
            load_video=load_video,
            video_fps=video_fps,
            batch_size=args.eval_batch_size,
            renormalization=args.renormalization,
            temperature=args.renormalization_temperature,
            skip_unreadable=True,
        )
        if unreadable:
            logger.warning(
                f"{len(unreadable)} evaluation videos could not be read and were left out with their captions, e.g. "
                + "; ".join(f"{video.video}: {video.reason}" for video in unreadable[:3])
            )
        return {**metrics, "num_unreadable_videos": len(unreadable)}

    before = evaluate(model) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()

    # ---- train -----------------------------------------------------------------------------------------------------
    rows = OneCaptionPerVideo(train_set, seed=train_args.seed)
    train_dataset = VideoTextPairDataset(
        rows, processor, load_video=load_video, video_fps=video_fps, training=True, seed=train_args.seed
    )
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=train_args.per_device_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=VideoTextCollator(processor),
        num_workers=train_args.num_workers,
    )
    run_arguments = recorded_arguments((model_args, args, world_args, train_args), accelerator.num_processes)
    result = train(
        accelerator,
        model,
        train_dataloader,
        retrieval_loss,
        train_args,
        evaluate=evaluate,
        run_arguments=run_arguments,
        epoch_aware=(train_dataset, rows),
        tracker_project="locvtp-finetune-retrieval",
        description="fine-tuning",
    )

    # ---- save, evaluate, report ------------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(result.model)
    state_dict = accelerator.get_state_dict(result.model)
    skipped = result.skipped_samples
    skipped_count = int(accelerator.reduce(torch.tensor(len(skipped), device=accelerator.device), "sum"))
    if skipped:
        logger.warning(f"Process {accelerator.process_index} skipped unreadable videos, e.g. {skipped[:3]}")
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir, state_dict=state_dict)
        processor.save_pretrained(output_dir)
        after = evaluate(unwrapped)
        print_table(before, after)
        results = {
            "before": before,
            "after": after,
            "steps": result.completed_steps,
            "skipped_training_samples": skipped_count,
            "skipped_nonfinite_steps": len(result.skipped_nonfinite_steps),
            "arguments": run_arguments,
        }
        (output_dir / "retrieval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        logger.info(f"Model, processor and retrieval_results.json saved in {output_dir}")
        if train_args.push_to_hub:
            card = retrieval_model_card(unwrapped, args, world_args, train_args, accelerator, len(train_set), after)
            commit = push_to_hub(
                train_args.hub_model_id,
                unwrapped,
                processor,
                card,
                extra_files=[output_dir / "retrieval_results.json"],
                state_dict=state_dict,
            )
            logger.info(f"Pushed to {commit.commit_url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
