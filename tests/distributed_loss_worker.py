"""One process of `test_two_processes_equal_one`: run with `torchrun --nproc_per_node 2 distributed_loss_worker.py
FOLDER`. Each process takes its split of the batch in FOLDER/data.pt, pads its text to its own length, computes the
LocVTP loss over the global batch and saves its loss terms and gradients to FOLDER/rank{rank}.pt."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from locvtp_hf import LocVTPConfig, LocVTPLoss
from locvtp_hf.modeling_locvtp import LocVTPContextProjectionHead


def main(folder: Path):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = torch.load(folder / "data.pt")
    rows = slice(*data["splits"][rank])
    length = int(data["mask"][rows].sum(-1).max()) + 1
    inputs = {
        "clip_embeds": data["clips"][rows],
        "video_embeds": data["videos"][rows],
        "text_embeds": data["texts"][rows],
        "word_embeds": data["words"][rows, :length],
    }
    inputs = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    head = LocVTPContextProjectionHead(LocVTPConfig(**data["config"]))
    head.load_state_dict(data["head"])
    scale = data["scale"].clone().requires_grad_()
    out = LocVTPLoss(**data["loss_kwargs"])(
        **inputs,
        word_mask=data["mask"][rows, :length],
        logit_scale=scale,
        context_head=head,
        context_offsets=data["offsets"][rows],
    )
    out.loss.backward()
    torch.save(
        {
            "terms": [out.loss.detach(), out.coarse.detach(), out.fine.detach(), out.temporal.detach()],
            "grads": {name: value.grad for name, value in inputs.items()},
            "head_grads": [p.grad for p in head.parameters()],
            "scale_grad": scale.grad,
        },
        folder / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
