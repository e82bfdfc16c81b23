"""Pre-train LocVTP with Accelerate, from one CPU process to many GPU machines.

    accelerate launch examples/pretrain.py                      # the built-in synthetic world, ~3 min on 2 CPU cores
    accelerate launch examples/pretrain.py --config run.yaml    # every argument below, from a YAML or JSON file
    accelerate launch examples/pretrain.py --help

Data: `--train_data synthetic` (default) renders the package's procedural video-text world on the fly; a folder in
the `videofolder` layout (`metadata.jsonl` or `metadata.csv` with `file_name`, `text`, optional `start`, `end`), a
HowTo100M-style captions `.json` or a WebVid-style `.csv` (with `--video_dir`) read real videos; webdataset `.tar` or
`.parquet` shards (a glob pattern, local or remote) are streamed, for data sets larger than a disk. Rows without a
caption are dropped when read; unreadable videos and shards are skipped; all are counted and reported at the end. See
docs/pretraining.md.

At the end the model and processor are saved with `save_pretrained` in `--output_dir`, evaluated zero-shot on
held-out data (text-to-video retrieval; in-video AUC, zero-shot grounding and the clip probe), and the figures are
printed beside their chance levels and written to `<output_dir>/eval_results.json`.

Resuming: checkpoints are written every `--checkpointing_steps` optimizer steps with `save_state`;
`--resume_from_checkpoint latest` continues from the newest complete one (the folders of an interrupted write are
ignored), at the same position in the data (streamed shards too: each process's position in its shards is saved
beside the checkpoint). The arguments that shape the run must be
the same as when the checkpoint was written (checked). The random draws
of a micro-batch depend only on its place in the run, so a resumed run ends with the same weights as an
uninterrupted one.

A step whose loss is NaN or infinite (on any process) is skipped: no weight update, a warning naming the step; the run
stops after `--max_consecutive_nonfinite_steps` such steps in a row.

Gradient accumulation: each micro-batch's contrastive losses see only that micro-batch's negatives (gathered over
all processes), so `--gradient_accumulation_steps N` gives the gradient-update size of an N times larger batch but
not its set of negatives.
"""

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
import yaml
from tokenizers.pre_tokenizers import BertPreTokenizer
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import AutoTokenizer, BertTokenizer, HfArgumentParser, get_cosine_schedule_with_warmup

from locvtp_hf import LocVTPConfig, LocVTPModel, LocVTPProcessor, LocVTPVideoProcessor
from locvtp_hf.data import (
    StreamingVideoTextDataset,
    VideoTextCollator,
    VideoTextPairDataset,
    howto100m_rows,
    videofolder_rows,
    webvid_rows,
)
from locvtp_hf.evaluation import localization_evaluation, text_to_video_retrieval
from locvtp_hf.hub import push_to_hub
from locvtp_hf.loss import sample_context_offsets
from locvtp_hf.model_card import create_model_card, eval_results_from_metrics
from locvtp_hf.optimization import adamw_optimizer
from locvtp_hf.stop_words import stop_word_token_ids
from locvtp_hf.synthetic_world import SyntheticWorld
from locvtp_hf.training_utils import (
    PARTIAL_SUFFIX,
    NonFiniteLossGuard,
    checkpoint_step,
    latest_checkpoint,
    term_gradient_norms,
)


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A LocVTP checkpoint to continue from. Default: a new small model."}
    )
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A pretrained video or image backbone for a new model (with --text_model_name_or_path)."},
    )
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "A pretrained BERT-like text encoder (and its tokenizer) for a new model."}
    )
    vision_model_type: str = field(
        default="videomae",
        metadata={
            "help": "Clip encoder of a new small model: 'videomae' (a video transformer over each clip: sees the order "
            "of its frames), 'timesformer', or 'vit' (frames encoded one by one and averaged: blind to their order)."
        },
    )
    hidden_size: int = field(default=96, metadata={"help": "Width of both towers of a new small model."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Depth of both towers of a new small model."})
    image_size: int = field(default=32, metadata={"help": "Frame size (px) of a new small model."})
    patch_size: int = field(default=8, metadata={"help": "Patch size of a new small model's ViT."})
    projection_dim: int = field(default=64, metadata={"help": "Dimension of the joint space of a new model."})
    num_clips: int = field(default=8, metadata={"help": "Clips T per training span."})
    frames_per_clip: int = field(default=2, metadata={"help": "Frames F per clip."})
    coarse_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the video-sentence loss (0 skips it)."}
    )
    fine_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the clip-word loss (0 skips it)."})
    temporal_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the temporal loss (0 skips it)."})
    temporal_cross_modal_weight: float = field(
        default=1.0, metadata={"help": "Weight of the cross-modal warp term inside the temporal loss (0 skips it)."}
    )
    temporal_intra_video_weight: float = field(
        default=1.0, metadata={"help": "Weight of the intra-video term inside the temporal loss (0 skips it)."}
    )
    fine_negatives: str = field(
        default="other_samples",
        metadata={
            "help": "Negatives of the clip-word terms: 'other_samples', or 'same_and_other_samples' (also the "
            "sample's own words and clips that discovery did not pick)."
        },
    )
    discovery_stop_words: bool = field(
        default=False,
        metadata={"help": "Keep stop words and punctuation out of clip-word correspondence discovery."},
    )
    freeze_vision: bool = field(default=False, metadata={"help": "Keep the clip encoder's weights fixed."})
    freeze_text: bool = field(default=False, metadata={"help": "Keep the text encoder's weights fixed."})


@dataclass
class DataArguments:
    train_data: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic'; a videofolder (metadata.jsonl / metadata.csv); a HowTo100M-style captions .json; "
            "a WebVid-style .csv (the last two with --video_dir); or webdataset .tar / .parquet shards, streamed (a "
            "glob pattern such as 'shards/*.tar', local or remote; needs the 'streaming' extra)."
        },
    )
    video_dir: str | None = field(
        default=None, metadata={"help": "Where the videos of a .json / .csv --train_data are."}
    )
    world_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world."})
    world_train_videos: int = field(default=400, metadata={"help": "Training videos of the synthetic world."})
    world_test_videos: int = field(default=100, metadata={"help": "Held-out videos of the synthetic world."})
    world_persistent_object: bool = field(
        default=False,
        metadata={"help": "One object per video that performs every event (only its action marks the moment)."},
    )
    world_persistent_object_looks: int | None = field(
        default=None,
        metadata={"help": "With --world_persistent_object: draw the objects from only this many looks (1: the same "
                  "object in every video, so only actions tell videos apart)."},
    )
    world_pretraining_span_coverage: float = field(
        default=1.0,
        metadata={"help": "Share of a synthetic pre-training span that its sentence's event covers, in (0, 1]."},
    )
    max_text_length: int = field(default=64, metadata={"help": "Longer texts are truncated."})
    probe_num_clips: int = field(default=16, metadata={"help": "Clips per whole video in the localization probe."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader worker processes that decode and sample clips."})


@dataclass
class TrainingArguments:
    output_dir: str = field(default="outputs/pretrain", metadata={"help": "Where checkpoints and the model go."})
    max_steps: int = field(
        default=1000,
        metadata={"help": "Optimizer steps to train for (0: save and evaluate the initial model, e.g. as a baseline)."},
    )
    per_device_batch_size: int = field(default=32, metadata={"help": "Samples per process and micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (not on biases, norms, scales)."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warmup steps before the cosine decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    max_consecutive_nonfinite_steps: int = field(
        default=10,
        metadata={"help": "Steps with a NaN or infinite loss are skipped; stop after this many in a row."},
    )
    mixed_precision: str | None = field(
        default=None, metadata={"help": "'no', 'fp16' or 'bf16'. Default: the accelerate launch config's."}
    )
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, data order and sampling."})
    logging_steps: int = field(default=20, metadata={"help": "Log the losses every N optimizer steps."})
    log_term_gradient_norms: bool = field(
        default=False,
        metadata={
            "help": "At each logging step, also log the norm of each weighted loss term's gradient on the clip "
            "encoder (one process only; three more backward passes per logging step)."
        },
    )
    checkpointing_steps: int = field(default=250, metadata={"help": "save_state every N optimizer steps (0: never)."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir/checkpoints."}
    )
    report_to: str | None = field(default=None, metadata={"help": "Trackers, e.g. 'tensorboard' or 'all'."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model and processor to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id for --push_to_hub."})


def parse_arguments(
    argument_classes: tuple = (ModelArguments, DataArguments, TrainingArguments), description: str = __doc__
) -> tuple:
    """The argument groups (dataclasses), from the command line and an optional `--config` YAML/JSON file whose values
    the command line overrides."""
    parser = HfArgumentParser(argument_classes, description=description)
    parser.add_argument("--config", help="YAML or JSON file of arguments; the command line overrides its values.")
    config_file = parser.parse_known_args()[0].config
    if config_file:
        text = Path(config_file).read_text()
        parser.set_defaults(**(yaml.safe_load(text) if config_file.endswith((".yaml", ".yml")) else json.loads(text)))
    *arguments, _ = parser.parse_args_into_dataclasses(return_remaining_strings=False, look_for_args_file=False)
    return tuple(arguments)


def is_sharded(train_data: str) -> bool:
    return train_data.endswith((".tar", ".parquet"))


# Arguments a resumed run may change: they do not shape the model, the data order or the optimisation.
RESUMABLE_CHANGES = {
    "output_dir",
    "logging_steps",
    "checkpointing_steps",
    "resume_from_checkpoint",
    "report_to",
    "push_to_hub",
    "hub_model_id",
    "probe_num_clips",
    "max_consecutive_nonfinite_steps",
    "log_term_gradient_norms",
}


def check_resume_arguments(checkpoint: Path, run_arguments: dict) -> None:
    """Refuse to resume a checkpoint written with other arguments than those that shape this run."""
    if not (checkpoint / "run_arguments.json").exists():
        raise ValueError(f"{checkpoint} has no run_arguments.json: it is not a checkpoint written by this script.")
    saved = json.loads((checkpoint / "run_arguments.json").read_text())
    changed = {
        name: (saved.get(name), value)
        for name, value in run_arguments.items()
        if name not in RESUMABLE_CHANGES and saved.get(name) != value
    }
    if changed:
        raise ValueError(
            f"{checkpoint} was written by a run with other arguments; resuming would not continue it. Changed: "
            + ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
        )


def data_position_file(checkpoint: Path, process_index: int) -> Path:
    return checkpoint / f"data_position_{process_index}.pt"


def load_data_position(checkpoint: Path, process_index: int) -> dict:
    """
    A process's position in its streamed shards, saved beside a checkpoint (a `StatefulDataLoader` state: numbers
    in plain containers). Loaded with `weights_only=True`, which refuses anything else instead of running the
    pickled code of a file someone handed over.
    """
    return torch.load(data_position_file(checkpoint, process_index), weights_only=True)


def save_checkpoint(accelerator: Accelerator, folder: Path, run_arguments: dict, data_position: dict | None) -> None:
    """
    `save_state` into `folder`, with the run's arguments and, for streamed data, each process's position in its
    shards. The checkpoint is written under a temporary name and renamed when complete, so an interrupted save never
    leaves a checkpoint that `--resume_from_checkpoint latest` would pick.
    """
    partial = folder.with_name(folder.name + PARTIAL_SUFFIX)
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by an interrupted save of the same step
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if data_position is not None:
        partial.mkdir(parents=True, exist_ok=True)
        torch.save(data_position, data_position_file(partial, accelerator.process_index))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (partial / "run_arguments.json").write_text(json.dumps(run_arguments, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
    accelerator.wait_for_everyone()


def check_arguments(model_args: ModelArguments, data_args: DataArguments, train_args: TrainingArguments) -> None:
    if bool(model_args.vision_model_name_or_path) != bool(model_args.text_model_name_or_path):
        raise ValueError(
            "--vision_model_name_or_path and --text_model_name_or_path go together: give both or neither."
        )
    if data_args.train_data.endswith((".json", ".csv")) and not data_args.video_dir:
        raise ValueError(f"--train_data {data_args.train_data} needs --video_dir, the folder of its videos.")
    if is_sharded(data_args.train_data) and not (model_args.model_name_or_path or model_args.text_model_name_or_path):
        raise ValueError(
            f"Streamed --train_data {data_args.train_data} cannot be read in full to build a word vocabulary: give a "
            "--model_name_or_path or a --text_model_name_or_path (with --vision_model_name_or_path) for its tokenizer."
        )
    if model_args.vision_model_type not in SMALL_VISION_MODELS:
        raise ValueError(
            f"--vision_model_type must be one of {list(SMALL_VISION_MODELS)}, got {model_args.vision_model_type!r}."
        )
    if train_args.log_term_gradient_norms and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--log_term_gradient_norms measures one process's gradients: run it with one process.")
    if train_args.push_to_hub and not train_args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id.")
    if train_args.max_steps < 0:
        raise ValueError("--max_steps must be at least 0.")
    for name in (
        "per_device_batch_size", "gradient_accumulation_steps", "logging_steps", "max_consecutive_nonfinite_steps"
    ):
        if getattr(train_args, name) < 1:
            raise ValueError(f"--{name} must be at least 1.")


def word_tokenizer(sentences) -> BertTokenizer:
    """A word-level BERT tokenizer over the words of `sentences` (the synthetic world needs no Hub tokenizer)."""
    split = BertPreTokenizer().pre_tokenize_str  # the tokenizer's own word and punctuation split
    words = sorted({word for sentence in sentences for word, _ in split(sentence.lower())})
    return BertTokenizer(
        vocab={token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    )


def locvtp_fields(args: ModelArguments, tokenizer) -> dict:
    """The LocVTP fields of a new model, whatever its towers."""
    return dict(
        projection_dim=args.projection_dim,
        num_clips=args.num_clips,
        coarse_loss_weight=args.coarse_loss_weight,
        fine_loss_weight=args.fine_loss_weight,
        temporal_loss_weight=args.temporal_loss_weight,
        temporal_cross_modal_weight=args.temporal_cross_modal_weight,
        temporal_intra_video_weight=args.temporal_intra_video_weight,
        fine_negatives=args.fine_negatives,
        discovery_excluded_token_ids=stop_word_token_ids(tokenizer) if args.discovery_stop_words else None,
    )


def new_processor(config: LocVTPConfig, tokenizer, max_text_length: int) -> LocVTPProcessor:
    """The processor of a new model: clips laid out and sized as `config` says, and `tokenizer`."""
    height, width = config.image_size
    video_processor = LocVTPVideoProcessor(
        num_clips=config.num_clips,
        frames_per_clip=config.frames_per_clip,
        size={"shortest_edge": min(height, width)},
        crop_size={"height": height, "width": width},
    )
    return LocVTPProcessor(video_processor, tokenizer, max_text_length=max_text_length)


def pretraining_model_card(model, data_args, train_args, accelerator, num_train_pairs: int | None, results: dict):
    """The Hub model card of the run: its data, the hyperparameters that shape it and its zero-shot figures."""
    if data_args.train_data == "synthetic":
        training_data = (
            f"The built-in synthetic video-text world of `locvtp_hf.synthetic_world` (seed {data_args.world_seed}): "
            f"{data_args.world_train_videos} training videos of coloured shapes doing actions, with generated "
            "English sentences that describe each action and its time span"
        )
    else:
        training_data = f"`{Path(data_args.train_data).name}`"
    if num_train_pairs is not None:
        training_data += f"; {num_train_pairs} (span, text) pairs"
    processes, micro_batch = accelerator.num_processes, train_args.per_device_batch_size
    evaluation_set = dict(
        dataset_type="locvtp-synthetic-world",
        dataset_name=f"LocVTP synthetic world (seed {data_args.world_seed}), held-out videos",
        dataset_split="test",
    )
    return create_model_card(
        model,
        train_args.hub_model_id,
        training_data=training_data + ".",
        training_hyperparameters={
            "Optimizer steps": results["steps"],
            "Batch per optimizer step (processes x micro-batch x accumulation)": (
                f"{processes} x {micro_batch} x {train_args.gradient_accumulation_steps}"
            ),
            "Contrastive batch (negatives come from one micro-batch of all processes)": processes * micro_batch,
            "Optimizer": f"AdamW, weight decay {train_args.weight_decay} on linear and convolution weights",
            "Learning rate": f"{train_args.learning_rate}, {train_args.warmup_steps} warm-up steps, cosine decay",
            "Gradient clipping (max norm)": train_args.max_grad_norm,
            "Mixed precision": accelerator.mixed_precision,
            "Seed": train_args.seed,
            "Hardware": f"{processes} x {accelerator.device.type}",
        },
        eval_results=[
            *eval_results_from_metrics(
                {name: results[name] for name in ("text_to_video_R@1", "text_to_video_R@5")},
                task_type="text-to-video-retrieval",
                task_name="Zero-shot text-to-video retrieval",
                metric_names={"text_to_video_R@1": "R@1", "text_to_video_R@5": "R@5"},
                **evaluation_set,
            ),
            *eval_results_from_metrics(
                {"probe_hit_rate": results["probe_hit_rate"]},
                task_type="temporal-grounding",
                task_name="Zero-shot clip localization probe",
                metric_names={"probe_hit_rate": "best clip inside the moment"},
                **evaluation_set,
            ),
        ],
        evaluation_notes=(
            f"Zero-shot on {data_args.world_test_videos} held-out videos of the synthetic world, whatever the "
            "training data. Retrieval: each video's caption ranks all the videos; chance is "
            f"R@1 {results['text_to_video_R@1_chance']:.3f}, R@5 {results['text_to_video_R@5_chance']:.3f}. Probe: "
            f"for each query, the video's clip (of {data_args.probe_num_clips}) that best matches the sentence lies "
            f"inside the queried moment; a random clip does {results['probe_random_rate']:.3f} of the time. One run, "
            "one seed."
        ),
        language="en" if data_args.train_data == "synthetic" else None,
    )


# the clip encoders a new small model can have; a video transformer's tubelets span two frames
SMALL_VISION_MODELS = {"videomae": {"tubelet_size": 2}, "timesformer": {}, "vit": {}}


# (figure, the chance level or floor it is read against) of the final table
EVALUATION_TABLE = [
    ("text_to_video_R@1", "text_to_video_R@1_chance"),
    ("text_to_video_R@5", "text_to_video_R@5_chance"),
    ("in_video_auc", None),
    ("zero_shot_R@1,IoU=0.3", "zero_shot_random_R@1,IoU=0.3"),
    ("zero_shot_R@1,IoU=0.5", "zero_shot_random_R@1,IoU=0.5"),
    ("zero_shot_R@1,IoU=0.7", "zero_shot_random_R@1,IoU=0.7"),
    ("zero_shot_mIoU", "zero_shot_random_mIoU"),
    ("probe_hit_rate", "probe_random_rate"),
]


def print_evaluation_table(results: dict) -> None:
    """The zero-shot figures beside their chance levels (for zero-shot grounding: the same search over random clip
    features), then the run's other figures and counts."""
    print("\n| zero-shot on held-out synthetic videos | value | chance |\n|---|---|---|")
    for name, reference in EVALUATION_TABLE:
        print(f"| {name} | {results[name]:.3f} | {0.5 if reference is None else results[reference]:.3f} |")
    shown = {name for row in EVALUATION_TABLE for name in row}
    for name, value in results.items():
        if name not in shown:
            print(f"| {name} | {value:.3f} | |" if isinstance(value, float) else f"| {name} | {value} | |")


def small_model_config(args: ModelArguments, tokenizer, max_text_length: int) -> LocVTPConfig:
    tower = dict(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=4,
        intermediate_size=2 * args.hidden_size,
    )
    vision = dict(model_type=args.vision_model_type, image_size=args.image_size, patch_size=args.patch_size, **tower)
    return LocVTPConfig(
        vision_config={**vision, **SMALL_VISION_MODELS[args.vision_model_type]},
        text_config=dict(
            model_type="bert", vocab_size=len(tokenizer), max_position_embeddings=max(128, max_text_length), **tower
        ),
        frames_per_clip=args.frames_per_clip,
        **locvtp_fields(args, tokenizer),
    )


def main():
    model_args, data_args, train_args = parse_arguments()
    check_arguments(model_args, data_args, train_args)
    output_dir = Path(train_args.output_dir)
    accelerator = Accelerator(
        # without an accelerator, several launched processes only form a (gloo) group when told they run on CPUs
        cpu=not torch.accelerator.is_available(),
        gradient_accumulation_steps=train_args.gradient_accumulation_steps,
        mixed_precision=train_args.mixed_precision,
        log_with=[name for name in (train_args.report_to or "").split(",") if name and name != "none"] or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=train_args.seed),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    set_seed(train_args.seed)

    # ---- data ------------------------------------------------------------------------------------------------
    world = SyntheticWorld(
        seed=data_args.world_seed,
        num_train=data_args.world_train_videos,
        num_test=data_args.world_test_videos,
        persistent_object=data_args.world_persistent_object,
        persistent_object_looks=data_args.world_persistent_object_looks,
        pretraining_span_coverage=data_args.world_pretraining_span_coverage,
    )
    test_captions, test_queries = world.captions("test"), world.grounding_queries("test")
    load_video, video_fps, train_rows, rows_without_caption = None, None, None, []
    streaming = is_sharded(data_args.train_data)  # shards are streamed below, once the processor exists
    if data_args.train_data == "synthetic":
        train_rows = world.pretraining_pairs("train").rename_column("video_id", "video")
        load_video, video_fps = world.render, world.fps
    elif Path(data_args.train_data).is_dir():
        train_rows, rows_without_caption = videofolder_rows(data_args.train_data, return_dropped=True)
    elif data_args.train_data.endswith(".json"):
        train_rows, rows_without_caption = howto100m_rows(
            data_args.train_data, data_args.video_dir, return_dropped=True
        )
    elif data_args.train_data.endswith(".csv"):
        train_rows, rows_without_caption = webvid_rows(data_args.train_data, data_args.video_dir, return_dropped=True)
    elif not streaming:
        raise ValueError(
            f"--train_data {data_args.train_data!r} is neither 'synthetic', a folder, a .json, a .csv nor .tar / "
            ".parquet shards"
        )

    # ---- model and processor ---------------------------------------------------------------------------------
    if model_args.model_name_or_path:
        model = LocVTPModel.from_pretrained(model_args.model_name_or_path)
        processor = LocVTPProcessor.from_pretrained(model_args.model_name_or_path)
    else:
        if model_args.text_model_name_or_path:
            tokenizer = AutoTokenizer.from_pretrained(model_args.text_model_name_or_path)
        else:
            tokenizer = word_tokenizer(
                [
                    *train_rows["text"],
                    *test_captions["caption"],
                    *(sentence for negatives in test_captions["hard_negatives"] for sentence in negatives),
                ]
            )
        if model_args.vision_model_name_or_path:
            model = LocVTPModel.from_vision_text_pretrained(
                model_args.vision_model_name_or_path,
                model_args.text_model_name_or_path,
                **locvtp_fields(model_args, tokenizer),
            )
        else:
            model = LocVTPModel(small_model_config(model_args, tokenizer, max_text_length=data_args.max_text_length))
        processor = new_processor(model.config, tokenizer, data_args.max_text_length)
    for tower, frozen in ((model.vision_model, model_args.freeze_vision), (model.text_model, model_args.freeze_text)):
        tower.requires_grad_(not frozen)
    # a loss term switched off leaves its own parameters without gradient, which DDP does not allow
    model.context_head.requires_grad_(model.config.temporal_loss_weight > 0)
    model.logit_scale.requires_grad_(model.config.coarse_loss_weight > 0)

    if streaming:
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader
        except ImportError as error:
            raise ImportError("Streaming shards needs torchdata: pip install 'locvtp-hf[streaming]'") from error
        train_dataset = StreamingVideoTextDataset(
            data_args.train_data,
            processor,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            seed=train_args.seed,
        )
        # each process streams its own shards, so accelerate must not shard this loader again: it is not prepared,
        # and its position (per process) is saved beside each checkpoint
        train_dataloader = StatefulDataLoader(
            train_dataset,
            batch_size=train_args.per_device_batch_size,
            collate_fn=VideoTextCollator(processor),
            num_workers=data_args.num_workers,
        )
    else:
        train_dataset = VideoTextPairDataset(
            train_rows, processor, load_video=load_video, video_fps=video_fps, training=True, seed=train_args.seed
        )
        train_dataloader = torch.utils.data.DataLoader(
            train_dataset,
            batch_size=train_args.per_device_batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=VideoTextCollator(processor),
            num_workers=data_args.num_workers,
        )

    # ---- optimizer --------------------------------------------------------------------------------------------------
    optimizer = adamw_optimizer(model, train_args.learning_rate, train_args.weight_decay)
    # the prepared scheduler steps once per process at every optimizer step: count its steps that way
    scheduler = get_cosine_schedule_with_warmup(
        optimizer,
        train_args.warmup_steps * accelerator.num_processes,
        train_args.max_steps * accelerator.num_processes,
    )
    if streaming:
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    else:
        model, optimizer, train_dataloader, scheduler = accelerator.prepare(
            model, optimizer, train_dataloader, scheduler
        )
    run_arguments = {
        **asdict(model_args),
        **asdict(data_args),
        **asdict(train_args),
        "num_processes": accelerator.num_processes,
    }
    if accelerator.log_with:
        accelerator.init_trackers("locvtp-pretrain", config=run_arguments)

    # ---- resume --------------------------------------------------------------------------------------------------
    checkpoints_dir = output_dir / "checkpoints"
    completed_steps = 0
    if train_args.resume_from_checkpoint:
        if train_args.resume_from_checkpoint == "latest":
            checkpoint = latest_checkpoint(checkpoints_dir)
        else:
            checkpoint = Path(train_args.resume_from_checkpoint)
        if checkpoint is not None:
            completed_steps = checkpoint_step(checkpoint)  # refuses the folder of an interrupted write
            check_resume_arguments(checkpoint, run_arguments)
            accelerator.load_state(str(checkpoint))
            if streaming:
                train_dataloader.load_state_dict(load_data_position(checkpoint, accelerator.process_index))
            logger.info(f"Resumed from {checkpoint} at step {completed_steps}")
        else:
            logger.info(f"No checkpoint in {checkpoints_dir}: starting from scratch")

    # ---- train ---------------------------------------------------------------------------------------------------
    accumulation = train_args.gradient_accumulation_steps
    if streaming:
        logger.info(f"Streaming {len(train_dataset.files)} shard(s) of {data_args.train_data}")
    else:
        updates_per_epoch = len(train_dataloader) // accumulation
        if updates_per_epoch == 0:
            raise ValueError(
                f"{len(train_dataset)} training pairs make less than one optimizer step of "
                f"{train_args.per_device_batch_size} x {accelerator.num_processes} process(es) x "
                f"{accumulation} accumulation: lower the batch size or add data."
            )
        logger.info(f"{len(train_dataset)} training pairs")
    logger.info(
        f"{accelerator.num_processes} process(es), global batch "
        f"{train_args.per_device_batch_size * accelerator.num_processes} x {accumulation} accumulation, "
        f"{train_args.max_steps} steps"
    )

    def micro_batches():
        """`(micro-step, batch)` from the position the run has reached; the micro-step counts within the epoch."""
        if streaming:  # an endless stream, resumed by its own state
            for micro_step, batch in enumerate(train_dataloader, start=completed_steps * accumulation):
                yield micro_step, batch.to(accelerator.device)
            return
        while True:
            epoch = completed_steps // updates_per_epoch
            train_dataloader.set_epoch(epoch)
            train_dataset.set_epoch(epoch)
            skip = (completed_steps % updates_per_epoch) * accumulation
            batches = accelerator.skip_first_batches(train_dataloader, skip) if skip else train_dataloader
            for micro_step, batch in enumerate(batches, start=skip):
                if micro_step // accumulation >= updates_per_epoch:
                    break
                yield micro_step, batch

    progress = tqdm(
        total=train_args.max_steps,
        initial=completed_steps,
        disable=not accelerator.is_local_main_process,
        desc="pre-training",
    )
    def is_logging_step(step: int) -> bool:
        return step % train_args.logging_steps == 0 or step == train_args.max_steps

    skipped_samples, skipped_shards = [], []
    nonfinite_guard = NonFiniteLossGuard(accelerator, train_args.max_consecutive_nonfinite_steps)
    model.train()
    with logging_redirect_tqdm():  # log lines above the progress bar, not on it
        for micro_step, batch in micro_batches():
            if completed_steps >= train_args.max_steps:
                break
            skipped_samples += batch.pop("skipped")
            skipped_shards += batch.pop("skipped_shards", [])
            # the randomness of a micro-batch (context offsets, dropout) depends only on its place in the run, so
            # that a resumed run draws what the uninterrupted one drew
            place = [train_args.seed, completed_steps, micro_step, accelerator.process_index]
            set_seed(int(np.random.SeedSequence(place).generate_state(1)[0]))
            batch_size, num_clips = batch["pixel_values_videos"].shape[:2]
            offsets = sample_context_offsets(
                batch_size,
                num_clips,
                accelerator.unwrap_model(model).config.context_window,
                device=accelerator.device,
            )
            with accelerator.accumulate(model):
                outputs = model(**batch, return_loss=True, context_offsets=offsets)
                if (
                    train_args.log_term_gradient_norms
                    and accelerator.sync_gradients
                    and is_logging_step(completed_steps + 1)
                ):
                    unwrapped = accelerator.unwrap_model(model)
                    weighted = {
                        f"grad_norm_{name}": getattr(unwrapped.config, f"{name}_loss_weight") * term
                        for name, term in (
                            ("coarse", outputs.loss_coarse),
                            ("fine", outputs.loss_fine),
                            ("temporal", outputs.loss_temporal),
                        )
                        if term is not None
                    }
                    term_norms = term_gradient_norms(weighted, unwrapped.vision_model.parameters())
                accelerator.backward(outputs.loss)
                nonfinite_guard.observe(outputs.loss)
                # a skipped step still counts (the data position and the schedule go on), without a weight update
                if accelerator.sync_gradients and nonfinite_guard.should_step(completed_steps + 1):
                    if train_args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), train_args.max_grad_norm)
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            progress.update(1)
            if is_logging_step(completed_steps):
                terms = {
                    "loss": outputs.loss,
                    "loss_coarse": outputs.loss_coarse,
                    "loss_fine": outputs.loss_fine,
                    "loss_temporal": outputs.loss_temporal,
                }
                logs = {
                    name: accelerator.reduce(value.detach(), "mean").item()
                    for name, value in terms.items()
                    if value is not None
                }
                logs["lr"] = scheduler.get_last_lr()[0]
                if train_args.log_term_gradient_norms:
                    logs.update(term_norms)
                progress.set_postfix(loss=f"{logs['loss']:.3f}")
                logger.info(f"step {completed_steps}: " + ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
                if accelerator.trackers:
                    accelerator.log(logs, step=completed_steps)
            if train_args.checkpointing_steps and completed_steps % train_args.checkpointing_steps == 0:
                save_checkpoint(
                    accelerator,
                    checkpoints_dir / f"step_{completed_steps}",
                    run_arguments,
                    train_dataloader.state_dict() if streaming else None,
                )
    progress.close()
    if completed_steps < train_args.max_steps:
        raise RuntimeError(f"The training data ran out after {completed_steps} of {train_args.max_steps} steps.")

    # ---- save, evaluate, report ----------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    # every process takes part in gathering the full state dict (needed when parameters are sharded)
    state_dict = accelerator.get_state_dict(model)
    skipped_count, skipped_shard_count = (
        int(accelerator.reduce(torch.tensor(len(skipped), device=accelerator.device), "sum"))
        for skipped in (skipped_samples, skipped_shards)
    )
    if skipped_samples:
        logger.warning(f"Process {accelerator.process_index} skipped training samples, e.g. {skipped_samples[:3]}")
    if skipped_shards:
        logger.warning(f"Process {accelerator.process_index} skipped unreadable shards: {skipped_shards}")
    if accelerator.is_main_process:
        unwrapped.save_pretrained(output_dir, state_dict=state_dict)
        processor.save_pretrained(output_dir)
        logger.info(
            f"{skipped_count} training sample(s) skipped (unreadable videos; streamed samples without a caption or "
            f"with a malformed .json), {skipped_shard_count} unreadable shard(s) skipped, {len(rows_without_caption)} "
            f"row(s) without a caption dropped when read, {len(nonfinite_guard.skipped_steps)} step(s) skipped for a "
            "non-finite loss"
        )

        # evaluate (and push) the model as saved: with FSDP the trained module only holds this process's shards
        trained = LocVTPModel.from_pretrained(output_dir).to(accelerator.device).eval()
        results = {
            **text_to_video_retrieval(
                trained,
                processor,
                test_captions["video_id"],
                test_captions["caption"],
                load_video=world.render,
                video_fps=world.fps,
            ),
            **localization_evaluation(
                trained,
                processor,
                test_queries,
                num_clips=data_args.probe_num_clips,
                load_video=world.render,
                video_fps=world.fps,
            ),
            "skipped_training_samples": skipped_count,
            "skipped_shards": skipped_shard_count,
            "rows_without_caption": len(rows_without_caption),
            "skipped_nonfinite_steps": len(nonfinite_guard.skipped_steps),
            "steps": completed_steps,
        }
        print_evaluation_table(results)
        (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
        logger.info(f"Model, processor and eval_results.json saved in {output_dir}")
        if train_args.push_to_hub:
            num_train_pairs = None if train_rows is None else len(train_rows)
            card = pretraining_model_card(trained, data_args, train_args, accelerator, num_train_pairs, results)
            commit = push_to_hub(
                train_args.hub_model_id,
                trained,
                processor,
                card,
                extra_files=[output_dir / "eval_results.json"],
            )
            logger.info(f"Pushed to {commit.commit_url}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
