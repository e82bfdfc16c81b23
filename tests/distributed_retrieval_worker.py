"""One process of `test_retrieval.py::test_two_processes_equal_one`: run with `torchrun --nproc_per_node 2
distributed_retrieval_worker.py FOLDER`. Each process takes its split of the pairs in FOLDER/data.pt, pads its texts to
its own length, computes the retrieval loss over the global batch and saves the loss and gradients to
FOLDER/rank{rank}.pt."""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from locvtp_hf.loss import retrieval_contrastive_loss


def main(folder: Path):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = torch.load(folder / "data.pt")
    rows = slice(*data["splits"][rank])
    length = int(data["mask"][rows].sum(-1).max())
    inputs = {
        "text_embeds": data["texts"][rows],
        "video_embeds": data["videos"][rows],
        "word_embeds": data["words"][rows, :length],
        "clip_embeds": data["clips"][rows],
    }
    inputs = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    scale = data["scale"].clone().requires_grad_()
    loss = retrieval_contrastive_loss(
        **inputs, word_mask=data["mask"][rows, :length], logit_scale=scale, fusion_weight=data["fusion_weight"]
    )
    loss.backward()
    torch.save(
        {
            "loss": loss.detach(),
            "grads": {name: value.grad for name, value in inputs.items()},
            "scale_grad": scale.grad,
        },
        folder / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
