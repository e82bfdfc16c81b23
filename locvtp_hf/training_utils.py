"""
Helpers shared by the training loops of `examples/pretrain.py`, `examples/finetune_retrieval.py` and
[`~grounding_finetuning.train_grounding_model`]: finding the newest complete checkpoint of a run, skipping the
optimizer steps whose loss is NaN or infinite, and measuring how hard each loss term pulls on an encoder.
"""

import logging
import re
from pathlib import Path

import torch


logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"step_(\d+)")
# A checkpoint is written under `step_<N>.partial` and renamed to `step_<N>` once complete.
PARTIAL_SUFFIX = ".partial"


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


class NonFiniteLossGuard:
    """
    Skips the optimizer steps whose loss is NaN or infinite, and stops a run whose loss stays so.

    One NaN or infinity in one sample's inputs makes the whole batch's loss, and every gradient, non-finite; an
    optimizer step would then spread it into every weight. A training loop gives the guard the loss of each
    micro-batch after its backward pass (`observe`), and asks `should_step` before each optimizer step. The answer is
    the same on every process (the flags are summed over processes), so all processes of a distributed run skip the
    same steps and stay in step. On a skipped step the loop zeroes the gradients without stepping the optimizer.

    Args:
        accelerator (`accelerate.Accelerator`): The run's accelerator; its `reduce` sums the flags over processes.
        max_consecutive_steps (`int`, *optional*, defaults to 10): Raise after this many skipped steps in a row.

    Attributes:
        skipped_steps (`list[int]`): The steps skipped so far.
    """

    def __init__(self, accelerator, max_consecutive_steps: int = 10):
        if max_consecutive_steps < 1:
            raise ValueError(f"max_consecutive_steps must be at least 1, got {max_consecutive_steps}.")
        self.accelerator = accelerator
        self.max_consecutive_steps = max_consecutive_steps
        self.skipped_steps = []
        self._consecutive = 0
        self._nonfinite = torch.zeros((), device=accelerator.device)

    def observe(self, loss: torch.Tensor) -> None:
        """Record the loss of a micro-batch (no synchronisation with the device or the other processes)."""
        self._nonfinite = self._nonfinite + (~torch.isfinite(loss.detach())).any().to(self._nonfinite.dtype)

    def should_step(self, step: int) -> bool:
        """
        Whether optimizer step `step` may update the weights: no process saw a non-finite loss since the last call.
        Every process must call it at every optimizer step (it synchronises them).

        Raises:
            `RuntimeError`: the step is the `max_consecutive_steps`-th skipped step in a row.
        """
        processes = int(self.accelerator.reduce((self._nonfinite > 0).float(), "sum").item())
        self._nonfinite = torch.zeros_like(self._nonfinite)
        if processes == 0:
            self._consecutive = 0
            return True
        self._consecutive += 1
        self.skipped_steps.append(step)
        if self.accelerator.is_main_process:
            logger.warning(
                f"Step {step}: the loss is not finite (NaN or inf) on {processes} of "
                f"{self.accelerator.num_processes} process(es); the step is skipped, without a weight update "
                f"({self._consecutive} in a row)"
            )
        if self._consecutive >= self.max_consecutive_steps:
            raise RuntimeError(
                f"The loss was not finite for {self._consecutive} optimizer steps in a row (steps "
                f"{step - self._consecutive + 1} to {step}): stopping. Look for NaN or infinite values in the inputs, "
                "lower the learning rate, or train in bf16 rather than fp16; max_consecutive_nonfinite_steps "
                f"(now {self.max_consecutive_steps}) sets how many such steps in a row are tolerated."
            )
        return False


def term_gradient_norms(terms: dict, parameters) -> dict[str, float]:
    """
    The L2 norm of the gradient of each loss term with respect to `parameters` (e.g. the clip encoder's), computed
    with `torch.autograd.grad` so that the parameters' `.grad` is left alone; the graph is kept for the backward pass
    of the total loss. Nominal loss weights are not effective weights: this shows which term the shared encoder
    actually follows.

    Args:
        terms (`dict[str, torch.Tensor | None]`): the (weighted) scalar terms; `None` and constant terms are left out.
        parameters: the parameters to measure against; those that do not require gradients are left out.

    Returns:
        `dict[str, float]`: the norm of each term's gradient (0.0 for a term that does not reach the parameters).
    """
    parameters = [parameter for parameter in parameters if parameter.requires_grad]
    norms = {}
    for name, term in terms.items():
        if term is None or not term.requires_grad or not parameters:
            continue
        grads = torch.autograd.grad(term, parameters, retain_graph=True, allow_unused=True)
        squares = [grad.float().square().sum() for grad in grads if grad is not None]
        norms[name] = torch.stack(squares).sum().sqrt().item() if squares else 0.0
    return norms

