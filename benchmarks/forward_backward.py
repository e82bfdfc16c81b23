"""Time one LocVTP training step (forward with all three losses, backward, AdamW update) for the tiny test-size
configuration and the default, paper-size configuration (TimeSformer-base + BERT-base), side by side.

    python benchmarks/forward_backward.py [--batch_size 2] [--steps 3] [--configs tiny default]

Prints one row per configuration: parameters, input shape, median seconds per step and samples per second.
"""

import argparse
import os
import platform
import statistics
import time

import torch

from locvtp_hf import LocVTPConfig, LocVTPModel


CONFIGS = {
    "tiny": dict(
        vision_config=dict(model_type="timesformer", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=16),
        text_config=dict(model_type="bert", vocab_size=64, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
        projection_dim=16, num_clips=4, frames_per_clip=4,
    ),
    "default": {},
}
TEXT_LENGTH = 16


def time_steps(config: LocVTPConfig, batch_size: int, steps: int) -> tuple[int, tuple, list[float]]:
    torch.manual_seed(0)
    model = LocVTPModel(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    height, width = config.image_size
    pixels = torch.randn(batch_size, config.num_clips, config.frames_per_clip, 3, height, width)
    input_ids = torch.randint(5, config.text_config.vocab_size, (batch_size, TEXT_LENGTH))
    input_ids[:, 0], input_ids[:, -1] = 2, 3
    batch = {"pixel_values_videos": pixels, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    times = []
    for _ in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sum(p.numel() for p in model.parameters()), tuple(pixels.shape), times[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| config | parameters | pixel_values_videos | s / step (median) | samples / s |")
    print("|---|---|---|---|---|")
    for name in args.configs:
        parameters, shape, times = time_steps(LocVTPConfig(**CONFIGS[name]), args.batch_size, args.steps)
        median = statistics.median(times)
        print(f"| {name} | {parameters / 1e6:.2f}M | {list(shape)} | {median:.3f} | {args.batch_size / median:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
