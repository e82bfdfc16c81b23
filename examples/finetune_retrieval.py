"""Fine-tune LocVTP for text-video retrieval with Accelerate, evaluating before and after.

    accelerate launch examples/finetune_retrieval.py         # outputs/pretrain (pretrain.py's model), synthetic world
    accelerate launch examples/finetune_retrieval.py --model_name_or_path new       # a new small model instead
    accelerate launch examples/finetune_retrieval.py --dataset msrvtt --train_annotations MSRVTT_data.json \\
        --train_video_ids MSRVTT_train.9k.csv --eval_annotations MSRVTT_JSFUSION_test.csv --video_dir videos \\
        --model_name_or_path CHECKPOINT
    accelerate launch examples/finetune_retrieval.py --help

The model is a `LocVTPForRetrieval`: a LocVTP checkpoint (pre-training or retrieval) with its processor; by default
`outputs/pretrain`, where `pretrain.py` saves its model, when it holds one. Otherwise (or with `--model_name_or_path
new`) it is a new model of `pretrain.py`'s default small size with a word-level tokenizer over the captions. It
trains with the symmetric InfoNCE loss over the global batch (all processes) on the retrieval score, each video once
per epoch with one of its captions; a step whose loss is NaN or infinite is skipped (no weight update, a warning), and
the run stops after `--max_consecutive_nonfinite_steps` such steps in a row. Before and after training it is
evaluated on the evaluation set (text-to-video and video-to-text R@1/5/10, median and mean rank; see
docs/retrieval.md); both tables are printed and written to `<output_dir>/retrieval_results.json`, and the model and
processor are saved in `--output_dir`.

Arguments: the `RetrievalArguments` dataclass below, parsed with `HfArgumentParser` by `pretrain.py`'s
`parse_arguments` (so `--config run.yaml` works too). The other building blocks shared with `pretrain.py` (the
word-level tokenizer and small model of a new run, its processor, the AdamW parameter groups) are imported from it.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from pretrain import (
    ModelArguments,
    TrainingArguments,
    adamw_optimizer,
    new_processor,
    parse_arguments,
    small_model_config,
    word_tokenizer,
)
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from locvtp_hf import LocVTPForRetrieval, LocVTPProcessor
from locvtp_hf.data import VideoTextCollator, VideoTextPairDataset
from locvtp_hf.evaluation import retrieval_evaluation
from locvtp_hf.hub import push_to_hub
from locvtp_hf.model_card import create_model_card, eval_results_from_metrics
from locvtp_hf.retrieval_datasets import DATASET_NAMES, OneCaptionPerVideo, load_retrieval_dataset
from locvtp_hf.retrieval_metrics import RENORMALIZATIONS
from locvtp_hf.synthetic_world import SyntheticWorld
from locvtp_hf.training_utils import NonFiniteLossGuard


logger = logging.getLogger(__name__)


@dataclass
class RetrievalArguments:
    # model
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A LocVTP checkpoint folder or Hub id. Default: outputs/pretrain (pretrain.py's output) if it holds "
            "a model, else a new small model; 'new': a new small model."
        },
    )
    retrieval_fusion_weight: float | None = field(
        default=None,
        metadata={"help": "Weight in [0, 1] of the fine-grained clip-word score. Default: the checkpoint's (0)."},
    )
    # data
    dataset: str = field(default="synthetic", metadata={"help": f"One of {DATASET_NAMES}."})
    train_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the training set."})
    eval_annotations: str | None = field(default=None, metadata={"help": "Annotation file of the evaluation set."})
    video_dir: str | None = field(default=None, metadata={"help": "Folder of the videos of both sets."})
    train_video_ids: str | None = field(
        default=None, metadata={"help": "MSR-VTT: the training videos, e.g. MSRVTT_train.9k.csv."}
    )
    world_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world (as in pretrain.py)."})
    world_train_videos: int = field(default=400, metadata={"help": "Training videos of the synthetic world."})
    world_test_videos: int = field(default=100, metadata={"help": "Evaluation videos of the synthetic world."})
    max_text_length: int = field(default=64, metadata={"help": "Longer texts are truncated (a new model only)."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader worker processes that decode and sample clips."})
    # training
    output_dir: str = field(default="outputs/finetune_retrieval", metadata={"help": "Where the model goes."})
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps to train for."})
    per_device_batch_size: int = field(default=32, metadata={"help": "Pairs per process and step."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (linear and conv weights)."})
    warmup_steps: int = field(default=30, metadata={"help": "Linear warmup steps before the cosine decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    max_consecutive_nonfinite_steps: int = field(
        default=10,
        metadata={"help": "Steps with a NaN or infinite loss are skipped; stop after this many in a row."},
    )
    mixed_precision: str | None = field(
        default=None, metadata={"help": "'no', 'fp16' or 'bf16'. Default: the accelerate launch config's."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, data order and sampling."})
    logging_steps: int = field(default=20, metadata={"help": "Log the loss every N steps."})
    # evaluation
    eval_batch_size: int = field(default=16, metadata={"help": "Videos per forward pass in evaluation."})
    renormalization: str | None = field(
        default=None, metadata={"help": f"Also report metrics after {RENORMALIZATIONS} re-normalisation."}
    )
    renormalization_temperature: float = field(default=0.01, metadata={"help": "Its softmax temperature."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model and processor to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id for --push_to_hub."})


def check_arguments(args: RetrievalArguments) -> None:
    if args.dataset not in DATASET_NAMES:
        raise ValueError(f"--dataset {args.dataset!r} is not one of {DATASET_NAMES}.")
    if args.dataset != "synthetic" and not (args.train_annotations and args.eval_annotations):
        raise ValueError(f"--dataset {args.dataset} needs --train_annotations and --eval_annotations.")
    if args.renormalization is not None and args.renormalization not in RENORMALIZATIONS:
        raise ValueError(f"--renormalization must be one of {RENORMALIZATIONS}, got {args.renormalization!r}.")
    if args.retrieval_fusion_weight is not None and not 0 <= args.retrieval_fusion_weight <= 1:
        raise ValueError(f"--retrieval_fusion_weight must be in [0, 1], got {args.retrieval_fusion_weight}.")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id.")
    for name in (
        "max_steps", "per_device_batch_size", "logging_steps", "eval_batch_size", "max_consecutive_nonfinite_steps"
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1.")


def checkpoint_to_load(model_name_or_path: str | None) -> str | None:
    """The checkpoint to fine-tune: the one given, else pretrain.py's output folder if it holds a model; None: new."""
    if model_name_or_path == "new":
        return None
    if model_name_or_path:
        return model_name_or_path
    pretrain_output = Path(TrainingArguments().output_dir)
    return str(pretrain_output) if (pretrain_output / "config.json").is_file() else None


def load_model(args: RetrievalArguments, captions: list[str]) -> tuple[LocVTPForRetrieval, LocVTPProcessor]:
    """The checkpoint and its processor, or a new model of pretrain.py's default size with a word-level tokenizer."""
    overrides = {}
    if args.retrieval_fusion_weight is not None:
        overrides["retrieval_fusion_weight"] = args.retrieval_fusion_weight
    checkpoint = checkpoint_to_load(args.model_name_or_path)
    if checkpoint is not None:
        logger.info(f"Fine-tuning {checkpoint}")
        model = LocVTPForRetrieval.from_pretrained(checkpoint, **overrides)
        return model, LocVTPProcessor.from_pretrained(checkpoint)
    logger.info("Fine-tuning a new small model (no checkpoint)")
    tokenizer = word_tokenizer(captions)
    config = small_model_config(ModelArguments(), tokenizer, max_text_length=args.max_text_length)
    for name, value in overrides.items():
        setattr(config, name, value)
    model = LocVTPForRetrieval(config)
    return model, new_processor(model.config, tokenizer, args.max_text_length)


def retrieval_model_card(model, args: RetrievalArguments, accelerator, num_train_videos: int, results: dict):
    """The Hub model card of the run: its data, hyperparameters and the fine-tuned evaluation figures."""
    if args.dataset == "synthetic":
        training_data = (
            f"The video-level captions of the built-in synthetic video-text world of `locvtp_hf.synthetic_world` "
            f"(seed {args.world_seed}): {num_train_videos} training videos"
        )
        dataset_name = f"LocVTP synthetic world (seed {args.world_seed}), held-out videos"
    else:
        training_data = f"{args.dataset}: `{Path(args.train_annotations).name}`, {num_train_videos} videos"
        dataset_name = f"{args.dataset} (`{Path(args.eval_annotations).name}`)"
    shown = ("text_to_video_R@1", "text_to_video_R@5", "text_to_video_R@10", "video_to_text_R@1")
    return create_model_card(
        model,
        args.hub_model_id,
        training_data=training_data + ", each video once per epoch with one of its captions.",
        training_hyperparameters={
            "Optimizer steps": args.max_steps,
            "Contrastive batch (processes x batch)": f"{accelerator.num_processes} x {args.per_device_batch_size}",
            "Optimizer": f"AdamW, weight decay {args.weight_decay} on linear and convolution weights",
            "Learning rate": f"{args.learning_rate}, {args.warmup_steps} warm-up steps, cosine decay",
            "Gradient clipping (max norm)": args.max_grad_norm,
            "Mixed precision": accelerator.mixed_precision,
            "Seed": args.seed,
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
    (args,) = parse_arguments((RetrievalArguments,), description=__doc__)
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

    # ---- data ------------------------------------------------------------------------------------------------------
    world = SyntheticWorld(seed=args.world_seed, num_train=args.world_train_videos, num_test=args.world_test_videos)
    load_video, video_fps = (world.render, world.fps) if args.dataset == "synthetic" else (None, None)
    train_set = load_retrieval_dataset(
        args.dataset, args.train_annotations, args.video_dir, args.train_video_ids, world=world, split="train"
    )
    eval_set = load_retrieval_dataset(args.dataset, args.eval_annotations, args.video_dir, world=world, split="test")
    logger.info(f"{len(train_set)} training videos, {len(eval_set)} evaluation videos ({args.dataset})")

    model, processor = load_model(
        args, [caption for captions in (*train_set["captions"], *eval_set["captions"]) for caption in captions]
    )
    # the pre-training context head takes no part in retrieval; DDP needs every trainable parameter used
    model.locvtp.context_head.requires_grad_(False)

    def evaluate(unwrapped: LocVTPForRetrieval) -> dict:
        return retrieval_evaluation(
            unwrapped,
            processor,
            eval_set,
            load_video=load_video,
            video_fps=video_fps,
            batch_size=args.eval_batch_size,
            renormalization=args.renormalization,
            temperature=args.renormalization_temperature,
        )

    before = evaluate(model) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()

    rows = OneCaptionPerVideo(train_set, seed=args.seed)
    train_dataset = VideoTextPairDataset(
        rows, processor, load_video=load_video, video_fps=video_fps, training=True, seed=args.seed
    )
    train_dataloader = torch.utils.data.DataLoader(
        train_dataset,
        batch_size=args.per_device_batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=VideoTextCollator(processor),
        num_workers=args.num_workers,
    )
    optimizer = adamw_optimizer(model, args.learning_rate, args.weight_decay)
    # the prepared scheduler steps once per process at every optimizer step: count its steps that way
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, args.warmup_steps * accelerator.num_processes, args.max_steps * accelerator.num_processes
    )
    model, optimizer, train_dataloader, scheduler = accelerator.prepare(model, optimizer, train_dataloader, scheduler)
    if len(train_dataloader) == 0:
        raise ValueError(
            f"{len(train_set)} training videos make less than one batch of {args.per_device_batch_size} x "
            f"{accelerator.num_processes} process(es): lower --per_device_batch_size or add data."
        )

    # ---- train -----------------------------------------------------------------------------------------------------
    completed_steps, epoch, skipped_videos = 0, 0, []
    nonfinite_guard = NonFiniteLossGuard(accelerator, args.max_consecutive_nonfinite_steps)
    progress = tqdm(total=args.max_steps, disable=not accelerator.is_local_main_process, desc="fine-tuning")
    model.train()
    while completed_steps < args.max_steps:
        for epoch_aware in (train_dataloader, train_dataset, rows):
            epoch_aware.set_epoch(epoch)
        for batch in train_dataloader:
            skipped_videos += batch.pop("skipped")
            outputs = model(**batch, return_loss=True)
            accelerator.backward(outputs.loss)
            nonfinite_guard.observe(outputs.loss)
            if nonfinite_guard.should_step(completed_steps + 1):
                if args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            completed_steps += 1
            progress.update(1)
            if completed_steps % args.logging_steps == 0 or completed_steps == args.max_steps:
                loss = accelerator.reduce(outputs.loss.detach(), "mean").item()
                logger.info(f"step {completed_steps}: loss {loss:.4g}, lr {scheduler.get_last_lr()[0]:.4g}")
            if completed_steps >= args.max_steps:
                break
        epoch += 1
    progress.close()

    # ---- save, evaluate, report ------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    skipped_count = int(accelerator.reduce(torch.tensor(len(skipped_videos), device=accelerator.device), "sum"))
    if skipped_videos:
        logger.warning(f"Process {accelerator.process_index} skipped unreadable videos, e.g. {skipped_videos[:3]}")
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir, state_dict=state_dict)
        processor.save_pretrained(output_dir)
        after = evaluate(unwrapped)
        print_table(before, after)
        results = {
            "before": before,
            "after": after,
            "steps": completed_steps,
            "skipped_training_samples": skipped_count,
            "skipped_nonfinite_steps": len(nonfinite_guard.skipped_steps),
            "arguments": asdict(args),
        }
        (output_dir / "retrieval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        logger.info(f"Model, processor and retrieval_results.json saved in {output_dir}")
        if args.push_to_hub:
            card = retrieval_model_card(unwrapped, args, accelerator, len(train_set), after)
            commit = push_to_hub(
                args.hub_model_id,
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
