"""The optimizer and learning-rate schedule the training runs share."""

import torch
from transformers import get_cosine_schedule_with_warmup


def adamw_optimizer(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, fused: bool | None = None
) -> torch.optim.AdamW:
    """
    AdamW over the trainable parameters, with weight decay on the weights of linear and convolution layers only.

    `fused`: torch's fused kernel, which updates all parameters in a few launches instead of several per parameter;
    by default when every trainable parameter is on CUDA (elsewhere the unfused update is kept). Pass `True` when the
    model moves to CUDA only after the optimizer is built (as `accelerator.prepare` does).
    """
    decayed = {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d))
    }
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if id(parameter) in decayed else no_decay).append(parameter)
    if fused is None:
        fused = all(parameter.is_cuda for parameter in decay + no_decay)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        fused=fused,
    )


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int, num_processes: int):
    """Linear warm-up over `warmup_steps` optimizer steps, then cosine decay to 0 at `max_steps`."""
    # the prepared scheduler steps once per process at every optimizer step: count its steps that way
    return get_cosine_schedule_with_warmup(optimizer, warmup_steps * num_processes, max_steps * num_processes)
