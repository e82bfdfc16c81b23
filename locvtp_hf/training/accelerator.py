"""The `Accelerator` of a training script, with its logging and seed."""

import logging
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from .arguments import TrainingArguments


def setup_accelerator(args: TrainingArguments) -> Accelerator:
    """
    The run's `Accelerator` (gradient accumulation, mixed precision, trackers logging to `<output_dir>/logs`, a
    seedable data order), with log lines on the main process only and every generator seeded with `args.seed`.
    """
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        # without an accelerator, several launched processes only form a (gloo) group when told they run on CPUs
        cpu=not torch.accelerator.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=[name for name in (args.report_to or "").split(",") if name and name != "none"] or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    set_seed(args.seed)
    return accelerator
