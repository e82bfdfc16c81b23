"""
The argument groups the example scripts share, and `parse_arguments`, which reads them from the command line and an
optional `--config` YAML or JSON file. A script adds its own dataclass (its data source, task options, evaluation)
beside these and gives its own defaults (e.g. its `output_dir`) to `parse_arguments`.
"""

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser


@dataclass
class ModelArguments:
    """The model to train: a checkpoint, or a new small model of the size the other fields give."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A LocVTP checkpoint (folder or Hub id) with its processor; 'new': a new small model."},
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
    patch_size: int = field(default=8, metadata={"help": "Patch size of a new small model's clip encoder."})
    projection_dim: int = field(default=64, metadata={"help": "Dimension of the joint space of a new model."})
    num_clips: int = field(default=8, metadata={"help": "Clips T per training span of a new model."})
    frames_per_clip: int = field(default=2, metadata={"help": "Frames F per clip of a new model."})
    max_text_length: int = field(default=64, metadata={"help": "Longer texts are truncated (a new model only)."})

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint to load; `None` for a new model."""
        return None if self.model_name_or_path in (None, "new") else self.model_name_or_path


@dataclass
class SyntheticWorldArguments:
    """The built-in synthetic video-text world, read when a script's data source is `synthetic`."""

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

    def build(self):
        """The [`SyntheticWorld`] these arguments describe (its videos are rendered when read)."""
        from locvtp_hf.synthetic import SyntheticWorld

        return SyntheticWorld(
            seed=self.world_seed,
            num_train=self.world_train_videos,
            num_test=self.world_test_videos,
            persistent_object=self.world_persistent_object,
            persistent_object_looks=self.world_persistent_object_looks,
            pretraining_span_coverage=self.world_pretraining_span_coverage,
        )


@dataclass
class TrainingArguments:
    """Optimisation, output and checkpointing, and tracking of a training run."""

    # output and checkpointing
    output_dir: str = field(default="outputs/run", metadata={"help": "Where checkpoints and the model go."})
    checkpointing_steps: int = field(default=250, metadata={"help": "save_state every N optimizer steps (0: never)."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir/checkpoints."}
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model and processor to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Repository id for --push_to_hub."})
    # optimisation
    max_steps: int = field(default=1000, metadata={"help": "Optimizer steps to train for."})
    per_device_batch_size: int = field(default=32, metadata={"help": "Samples per process and micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (linear and conv weights only)."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warmup steps before the cosine decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    max_consecutive_nonfinite_steps: int = field(
        default=10,
        metadata={"help": "Steps with a NaN or infinite loss are skipped; stop after this many in a row."},
    )
    mixed_precision: str | None = field(
        default=None, metadata={"help": "'no', 'fp16' or 'bf16'. Default: the accelerate launch config's."}
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute the towers' activations in the backward pass instead of keeping them "
                  "(activation checkpointing): less memory, so larger batches, for about one more forward pass."},
    )
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, data order and sampling."})
    num_workers: int = field(default=1, metadata={"help": "DataLoader worker processes that decode and sample clips."})
    # evaluation and tracking
    eval_steps: int = field(
        default=0,
        metadata={"help": "Also evaluate every N optimizer steps, logged as eval_* (0: only where the script does)."},
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata={
            "help": "Keep the model of the best periodic evaluation (--eval_steps) by this figure of the script's "
            "evaluation (e.g. text_to_video_R@1) in <output_dir>/best_model."
        },
    )
    greater_is_better: bool = field(
        default=True, metadata={"help": "Whether a larger --metric_for_best_model is better."}
    )
    logging_steps: int = field(default=20, metadata={"help": "Log the losses every N optimizer steps."})
    report_to: str | None = field(default=None, metadata={"help": "Trackers, e.g. 'tensorboard' or 'all'."})


def parse_arguments(argument_classes: tuple, description: str, defaults: dict | None = None) -> tuple:
    """
    The argument groups (dataclasses), from the command line and an optional `--config` YAML/JSON file.

    Args:
        argument_classes (`tuple[type, ...]`): The dataclasses to fill, e.g. `(ModelArguments, TrainingArguments)`.
        description (`str`): The `--help` text (the script's docstring).
        defaults (`dict`, *optional*): The script's own defaults of fields of the shared groups (e.g. `output_dir`).

    Returns:
        `tuple`: one instance per class. The command line overrides the config file, which overrides `defaults`.
    """
    parser = HfArgumentParser(argument_classes, description=description)
    parser.add_argument("--config", help="YAML or JSON file of arguments; the command line overrides its values.")
    parser.set_defaults(**(defaults or {}))
    config_file = parser.parse_known_args()[0].config
    if config_file:
        text = Path(config_file).read_text()
        parser.set_defaults(**(yaml.safe_load(text) if config_file.endswith((".yaml", ".yml")) else json.loads(text)))
    *arguments, _ = parser.parse_args_into_dataclasses(return_remaining_strings=False, look_for_args_file=False)
    return tuple(arguments)


def recorded_arguments(argument_groups: Sequence, num_processes: int) -> dict:
    """
    The run's arguments as one flat dict: every field of its argument groups (dataclass instances) and its number of
    processes. Written beside every checkpoint, compared on resume and logged to the trackers.
    """
    return {**{name: value for group in argument_groups for name, value in asdict(group).items()},
            "num_processes": num_processes}


def check_training_arguments(args: TrainingArguments, min_steps: int = 1) -> None:
    """Clear errors for bad values and combinations of the shared training arguments, before any work."""
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id.")
    if args.max_steps < min_steps:
        raise ValueError(f"--max_steps must be at least {min_steps}.")
    for name in (
        "per_device_batch_size", "gradient_accumulation_steps", "logging_steps", "max_consecutive_nonfinite_steps"
    ):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1.")
    if args.metric_for_best_model and not args.eval_steps:
        raise ValueError("--metric_for_best_model chooses among periodic evaluations: set --eval_steps too.")
    for name in ("checkpointing_steps", "eval_steps", "warmup_steps", "num_workers"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be 0 or more.")
