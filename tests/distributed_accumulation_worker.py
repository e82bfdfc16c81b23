"""One process of `test_two_processes_accumulating_equal_one_process_with_the_global_batch`: run with `torchrun
--nproc_per_node 2 distributed_accumulation_worker.py FOLDER`. Each process loads the model of FOLDER/model, wraps it
in DDP through Accelerate (gloo), runs the cached-embedding step of `examples/pretrain.py --accumulate_negatives` over
its micro-batches of FOLDER/data.pt, and saves the losses (averaged over the processes, as the loop logs them) and the
gradients DDP left to FOLDER/rank{rank}.pt."""

import importlib.util
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

from locvtp_hf import LocVTPForPreTraining
from locvtp_hf.training import TrainingStep, cached_embedding_step


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main(folder: Path):
    spec = importlib.util.spec_from_file_location("pretrain_under_test", EXAMPLES / "pretrain.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    batches = torch.load(folder / "data.pt")["batches"]
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=len(batches[0]))
    rank = accelerator.process_index
    assert accelerator.num_processes == 2 and isinstance(
        accelerator.prepare(torch.nn.Linear(1, 1)), torch.nn.parallel.DistributedDataParallel
    )
    model = accelerator.prepare(LocVTPForPreTraining.from_pretrained(folder / "model")).train()
    terms = cached_embedding_step(
        accelerator,
        model,
        batches[rank],
        pretrain.AccumulatedNegativesLoss(accelerator),
        [TrainingStep(1, index, False) for index in range(len(batches[rank]))],
        reseed=lambda index: torch.manual_seed(10 * rank + index),
    )
    unwrapped = accelerator.unwrap_model(model)
    torch.save(
        {
            "terms": [
                accelerator.reduce(terms[name].detach(), "mean")
                for name in ("loss", "loss_coarse", "loss_fine", "loss_temporal")
            ],
            "grads": {name: p.grad for name, p in unwrapped.named_parameters() if p.requires_grad},
        },
        folder / f"rank{rank}.pt",
    )
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
