"""
Gradient accumulation that adds negatives: the cached-embedding approach of open_clip's `--accum-freq`.

Plain accumulation sums the gradients of `k` micro-batches, each with its own contrastive loss, so a sample only ever
meets the negatives of its own micro-batch. With an [`EmbeddingLoss`] (a loss split into "embeddings of a batch" and
"losses from embeddings"), [`cached_embedding_step`] makes the losses see the whole accumulated batch instead:

1. each micro-batch is embedded without gradients, and its embeddings are cached;
2. each micro-batch is embedded again, with gradients and the same random state as in phase 1 (the same dropout),
   its fresh embeddings replace its cached ones, the losses are computed over all the micro-batches (gathered over the
   processes as always) and back-propagated: the gradients reach the towers through this micro-batch's embeddings
   only, so after the `k`-th the summed gradients are those of one batch `k` times larger.

The cost: one more forward pass of the towers per micro-batch, and the losses computed `k` times over the accumulated
batch; the memory of one micro-batch's activations plus the cached embeddings. Parameters that the losses use directly
(a logit scale, a projection head applied to embeddings) get their gradients from one of the `k` passes only (see
[`EmbeddingLoss.loss`]), so they too get the big batch's gradients (open_clip counts its logit scale `k` times).
"""

from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType


class EmbeddingLoss:
    """
    A training loss in two halves, for [`cached_embedding_step`]: the embeddings of a batch, and the losses of
    embeddings (which may hold the rows of several batches). Called like a plain loss function (`loss_function(model,
    batch, step)`), it runs both halves on one batch.
    """

    def embed(self, model: torch.nn.Module, batch: dict, step) -> dict[str, torch.Tensor]:
        """
        The embeddings of `batch` that the losses need, each with the samples along dim 0. Floating-point tensors are
        the differentiable ones; the others (masks, indices, random draws such as context offsets) are taken from the
        first, gradient-free pass. Random draws must come from the global generators, reseeded before each call.

        Args:
            model (`torch.nn.Module`): The prepared (possibly wrapped) model: call it, not the unwrapped module.
            batch (`dict`): The micro-batch; do not change it (it is embedded twice).
            step ([`TrainingStep`]): Where the micro-batch is in the run.
        """
        raise NotImplementedError

    def loss(
        self, model: torch.nn.Module, embeddings: dict[str, torch.Tensor], step, loss_parameter_gradients: bool = True
    ) -> dict:
        """
        The losses of `embeddings` (the micro-batches' `embed` outputs concatenated along dim 0, every other dimension
        zero-padded to the largest): `{"loss": the scalar to minimise, other terms to log}`.

        Args:
            model (`torch.nn.Module`): The prepared model.
            embeddings (`dict[str, torch.Tensor]`): As above.
            step ([`TrainingStep`]): The step of the micro-batch whose embeddings carry gradients.
            loss_parameter_gradients (`bool`): Whether the parameters the losses use directly get gradients from this
                call (True for one of the `k` passes of an accumulated batch only).
        """
        raise NotImplementedError

    def __call__(self, model: torch.nn.Module, batch: dict, step) -> dict:
        return self.loss(model, self.embed(model, batch, step), step)


def check_cached_embedding_support(accelerator: Accelerator) -> None:
    """Refuses the setups where the losses cannot be computed outside the wrapped model's forward pass."""
    unsupported = {
        DistributedType.DEEPSPEED: "DeepSpeed (its engine accumulates gradients itself)",
        DistributedType.FSDP: "FSDP (the losses' own parameters are used outside the sharded forward pass)",
        DistributedType.MEGATRON_LM: "Megatron-LM",
    }
    if accelerator.distributed_type in unsupported:
        raise ValueError(
            "Gradient accumulation with cached embeddings (accumulated negatives) is not supported with "
            f"{unsupported[accelerator.distributed_type]}: use DDP or one process, or plain accumulation."
        )


def pad_to(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Zero-pads (False for bool) every dimension of `tensor` after the first to `shape[1:]`; keeps the graph."""
    padding = []
    for size, target in zip(reversed(tensor.shape[1:]), reversed(shape[1:])):
        padding += [0, target - size]
    if not any(padding):
        return tensor
    if tensor.dtype == torch.bool:
        return F.pad(tensor.long(), padding).bool()
    return F.pad(tensor, padding)


def concatenate_rows(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenates along dim 0, every other dimension zero-padded to the largest (e.g. texts padded differently)."""
    shape = [max(sizes) for sizes in zip(*(tensor.shape for tensor in tensors))]
    return torch.cat([pad_to(tensor, shape) for tensor in tensors])


def cached_embedding_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    batches: Sequence[dict],
    embedding_loss: EmbeddingLoss,
    steps: Sequence,
    reseed: Callable[[int], None],
    observe: Callable[[torch.Tensor], None] | None = None,
) -> dict:
    """
    The forward and backward passes of one accumulated batch with cached embeddings (see the module doc); the caller
    then steps the optimizer. Gradient synchronisation between processes (DDP) happens in the last micro-batch's
    backward pass only.

    Args:
        accelerator (`Accelerator`): The run's accelerator (DDP or one process; see `check_cached_embedding_support`).
        model (`torch.nn.Module`): The prepared model, in training mode.
        batches (`Sequence[dict]`): The micro-batches of this process.
        embedding_loss ([`EmbeddingLoss`]): The loss in two halves.
        steps (`Sequence[TrainingStep]`): The step of each micro-batch.
        reseed (`Callable[[int], None]`): Seeds the random generators for micro-batch `j`; called before each of its two
            forward passes, so that both draw the same dropout masks and random numbers.
        observe (`Callable`, *optional*): Called with the loss after each backward pass (the non-finite guard).

    Returns:
        `dict`: the terms of the last pass, i.e. the losses of the whole accumulated batch (all processes).
    """
    count = len(batches)
    cached = []
    with torch.no_grad():
        for index, (batch, step) in enumerate(zip(batches, steps)):
            reseed(index)
            cached.append({name: value.detach() for name, value in embedding_loss.embed(model, batch, step).items()})
    terms = {}
    for index, (batch, step) in enumerate(zip(batches, steps)):
        last = index == count - 1
        reseed(index)
        # the optimizer steps when the accelerator says the gradients are synchronised: after the last micro-batch
        accelerator.sync_gradients = last
        with nullcontext() if last else accelerator.no_sync(model):
            fresh = embedding_loss.embed(model, batch, step)
            embeddings = {
                name: concatenate_rows([
                    fresh[name] if other == index and fresh[name].is_floating_point() else cached[other][name]
                    for other in range(count)
                ])
                for name in cached[0]
            }
            terms = embedding_loss.loss(model, embeddings, step, loss_parameter_gradients=last)
            # each pass back-propagates the whole batch's loss through its own rows; the accelerator divides by `k`
            accelerator.backward(terms["loss"] * accelerator.gradient_accumulation_steps)
        if observe is not None:
            observe(terms["loss"])
    accelerator.sync_gradients = True
    return terms
