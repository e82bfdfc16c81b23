"""The optimizer and learning-rate schedule the training runs share."""

import torch
from transformers import get_cosine_schedule_with_warmup


def adamw_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with weight decay on the weights of linear and convolution layers only."""
    decayed = {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d))
    }
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if id(parameter) in decayed else no_decay).append(parameter)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate
    )


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, max_steps: int, num_processes: int):
    """Linear warm-up over `warmup_steps` optimizer steps, then cosine decay to 0 at `max_steps`."""
    # the prepared scheduler steps once per process at every optimizer step: count its steps that way
    return get_cosine_schedule_with_warmup(optimizer, warmup_steps * num_processes, max_steps * num_processes)
