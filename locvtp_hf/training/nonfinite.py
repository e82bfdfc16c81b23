"""Skipping the optimizer steps whose loss is NaN or infinite, the same steps on every process."""

import logging

import torch


logger = logging.getLogger(__name__)


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
