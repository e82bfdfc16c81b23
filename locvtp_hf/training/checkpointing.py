"""
Checkpoints of a training run: written with `Accelerator.save_state` under a temporary name and renamed when
complete (an interrupted write is never resumed from), with the run's arguments (a resumed run must be shaped as the
one that wrote it) and, for streamed data, each process's position in its shards. And the model of the best periodic
evaluation ([`BestModel`]), written the same way.
"""

import json
import logging
import re
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator


logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"step_(\d+)")
# A checkpoint is written under `step_<N>.partial` and renamed to `step_<N>` once complete.
PARTIAL_SUFFIX = ".partial"
# Arguments a resumed run may change: they do not shape the model, the data order or the optimisation.
RESUMABLE_CHANGES = {
    "output_dir",
    "logging_steps",
    "checkpointing_steps",
    "eval_steps",
    "resume_from_checkpoint",
    "report_to",
    "push_to_hub",
    "hub_model_id",
    "probe_num_clips",
    "max_consecutive_nonfinite_steps",
    "log_term_gradient_norms",
    "gradient_checkpointing",
    "eval_batch_size",
    "renormalization",
    "renormalization_temperature",
    "top_k",
    "nms_threshold",
    "iou_comparison",
    "num_plots",
    "metric_for_best_model",
    "greater_is_better",
}


def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step `N` of a checkpoint folder `step_<N>`."""
    name = Path(checkpoint).name
    match = CHECKPOINT_NAME.fullmatch(name)
    if match is not None:
        return int(match.group(1))
    if name.endswith(PARTIAL_SUFFIX):
        raise ValueError(
            f"{checkpoint} is an incomplete checkpoint: its write was interrupted. Resume from a complete step_<N> "
            "folder, or with 'latest'."
        )
    raise ValueError(f"{checkpoint} is not a checkpoint folder: its name must be step_<N>.")


def latest_checkpoint(checkpoints_dir: str | Path) -> Path | None:
    """
    The complete checkpoint `step_<N>` of `checkpoints_dir` with the largest `N`; `None` when there is none.

    Folders left by an interrupted write (`step_<N>.partial`) are ignored with a warning that names them. They are
    left in place (delete them to reclaim the space); a later save of the same step replaces them.
    """
    checkpoints, partial = [], []
    for path in Path(checkpoints_dir).glob("step_*"):
        if CHECKPOINT_NAME.fullmatch(path.name) and path.is_dir():
            checkpoints.append(path)
        elif path.name.endswith(PARTIAL_SUFFIX):
            partial.append(path)
    if partial:
        logger.warning(
            f"Ignoring {len(partial)} incomplete checkpoint(s) whose write was interrupted: "
            + ", ".join(str(path) for path in sorted(partial))
        )
    return max(checkpoints, key=checkpoint_step, default=None)


def checkpoint_to_resume(resume_from_checkpoint: str | None, checkpoints_dir: Path) -> Path | None:
    """The checkpoint `--resume_from_checkpoint` names: a folder, the newest complete one for `latest` (`None`, with a
    log line, when there is none yet), or `None` when not resuming."""
    if not resume_from_checkpoint:
        return None
    if resume_from_checkpoint != "latest":
        return Path(resume_from_checkpoint)
    checkpoint = latest_checkpoint(checkpoints_dir)
    if checkpoint is None:
        logger.info(f"No checkpoint in {checkpoints_dir}: starting from scratch")
    return checkpoint


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


class BestModel:
    """
    Keeps the model of the best evaluation so far in `<output_dir>/best_model` (`save_pretrained`, written under a
    temporary name and renamed when complete), with `best_metric.json`: the metric, its value and the step.

    Args:
        output_dir (`str` or `Path`): The run's output folder.
        metric (`str`): The figure of the evaluation to compare, e.g. `"text_to_video_R@1"`.
        greater_is_better (`bool`): Whether a larger value is better.
        resumed (`bool`): The run resumes from a checkpoint: the recorded best of the same metric stays the one to
            beat (a new run replaces it at its first evaluation).
    """

    FOLDER = "best_model"
    RECORD = "best_metric.json"

    def __init__(self, output_dir: str | Path, metric: str, greater_is_better: bool = True, resumed: bool = False):
        self.folder = Path(output_dir) / self.FOLDER
        self.metric, self.greater_is_better = metric, greater_is_better
        self.value = None
        record = self.folder / self.RECORD
        if resumed and record.exists():
            recorded = json.loads(record.read_text())
            if recorded["metric"] == metric:
                self.value = recorded["value"]

    def update(self, model, metrics: dict, step: int) -> bool:
        """Saves `model` if `metrics[metric]` beats the best so far (the first evaluation always does); returns
        whether it did."""
        if self.metric not in metrics:
            raise KeyError(
                f"--metric_for_best_model {self.metric!r} is not a figure of the evaluation; it gives "
                f"{sorted(name for name, value in metrics.items() if isinstance(value, int | float))}."
            )
        value = float(metrics[self.metric])
        if self.value is not None and not (value > self.value if self.greater_is_better else value < self.value):
            return False
        partial = self.folder.with_name(self.folder.name + PARTIAL_SUFFIX)
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        (partial / self.RECORD).write_text(json.dumps({"metric": self.metric, "value": value, "step": step}) + "\n")
        shutil.rmtree(self.folder, ignore_errors=True)
        partial.rename(self.folder)
        self.value = value
        logger.info(f"step {step}: best {self.metric} so far ({value:.4g}), model saved in {self.folder}")
        return True
