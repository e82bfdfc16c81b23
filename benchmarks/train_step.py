"""Training step throughput of LocVTP: forward with the three losses, backward and AdamW update, for the tiny
(test-size), small (`examples/pretrain.py --vision_model_type vit`'s model) and default (paper-size: TimeSformer-base +
BERT-base)
configurations.

    python benchmarks/train_step.py [--configs tiny small default] [--device auto|cpu|cuda]
        [--precision auto|fp32|bf16] [--batch_size N [N ...]] [--steps 5] [--text_length 32] [--matmul_size N]
        [--attn_implementation eager|sdpa ...] [--gradient_checkpointing off|on ...] [--fused_optimizer off|on ...]
        [--torch_compile off|on ...] [--quick]

On CUDA (chosen automatically when present) the step runs under bf16 autocast, with the towers' default attention
(SDPA: transformers' for BERT and ViT, the package's for TimeSformer) and the fused AdamW that training uses there; on
the CPU in fp32 with the unfused AdamW. Several values of `--batch_size`, `--attn_implementation` (the clip encoder's
attention), `--gradient_checkpointing` (activation checkpointing of both towers), `--fused_optimizer` and
`--torch_compile` (`torch.compile` of the model, whose losses stay eager; compilation happens in the untimed warm-up
step) give a row for every combination, measured one after the other in the same run: before and after side by side. Per row it
prints the median step time, samples per second, the model FLOPs of one step counted with
`benchmark_utils.flop_counter` (forward + backward: matrix multiplies, convolutions, attention), the FLOP/s they make, that as a share of the peak
FLOP/s of a large matrix multiply measured in the same run and precision, and the peak memory of a step (parameters,
optimizer state and batch, plus the peak of what the step allocates). The default configuration runs by default
only on CUDA: on a CPU one step of it takes minutes (add `--configs tiny small default` to include it).
"""

import argparse
import gc
import itertools

import torch
from benchmark_utils import (
    Table,
    autocast,
    flop_counter,
    is_out_of_memory,
    machine_line,
    matmul_peak_flops,
    measure,
    pick_device,
    pick_precision,
)

from locvtp_hf import LocVTPConfig
from locvtp_hf.modeling_locvtp import LocVTPForPreTraining


CONFIGS = {
    "tiny": dict(
        vision_config=dict(model_type="timesformer", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, image_size=32, patch_size=16),
        text_config=dict(model_type="bert", vocab_size=64, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64),
        projection_dim=16, num_clips=4, frames_per_clip=4,
    ),
    # the new model of examples/pretrain.py with `--vision_model_type vit` (its default clip encoder until 2026-12-06,
    # when it became VideoMAE; the results files were measured with this one)
    "small": dict(
        vision_config=dict(model_type="vit", hidden_size=96, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=192, image_size=32, patch_size=8),
        text_config=dict(model_type="bert", vocab_size=256, hidden_size=96, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=192, max_position_embeddings=128),
        projection_dim=64, num_clips=8, frames_per_clip=2,
    ),
    "default": {},
}
DEFAULT_BATCH_SIZES = {
    "cpu": {"tiny": 32, "small": 32, "default": 2},
    "cuda": {"tiny": 256, "small": 256, "default": 8},
}
COLUMNS = [
    "config", "parameters (M)", "batch", "clips x frames x px", "attention (vision / text)", "activation checkpointing",
    "optimizer", "torch.compile", "precision", "s / step", "samples / s", "GFLOP / step", "TFLOP/s", "% of matmul peak",
    "peak memory (GiB)",
]


def random_batch(config: LocVTPConfig, batch_size: int, text_length: int, device: torch.device) -> dict:
    """Random clips `[B, T, F, 3, H, W]` and random token ids of `text_length` tokens, on `device`."""
    generator = torch.Generator().manual_seed(0)
    height, width = config.image_size
    pixels = torch.randn(
        batch_size, config.num_clips, config.frames_per_clip, 3, height, width, generator=generator
    )
    input_ids = torch.randint(5, config.text_config.vocab_size, (batch_size, text_length), generator=generator)
    batch = {"pixel_values_videos": pixels, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    return {name: value.to(device) for name, value in batch.items()}


def measure_train_step(
    config_name: str,
    batch_size: int,
    device: torch.device,
    precision: str,
    steps: int,
    text_length: int,
    matmul_peak: float | None = None,
    attn_implementation: str | None = None,
    gradient_checkpointing: bool = False,
    fused_optimizer: bool | None = None,
    torch_compile: bool = False,
) -> dict:
    """
    One row of the table: the configuration's training step measured with `benchmark_utils.measure`; the FLOP/s
    as a share of `matmul_peak` (FLOP/s) when given. `attn_implementation`: the clip encoder's attention ("eager" or
    "sdpa"; default: the tower's default). `fused_optimizer`: AdamW's fused update (default: on CUDA, as in
    training). `torch_compile`: the step runs `torch.compile(model)`; its FLOPs are counted on an eager step, since
    the counter does not see inside compiled kernels.
    """
    config = LocVTPConfig(**CONFIGS[config_name])
    torch.manual_seed(0)
    model = LocVTPForPreTraining(config).to(device).train()
    if attn_implementation is not None:
        model.set_attn_implementation({"vision_config": attn_implementation})
    if gradient_checkpointing:
        model.activation_checkpointing_enable()
    if fused_optimizer is None:
        fused_optimizer = device.type == "cuda"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused_optimizer)
    batch = random_batch(config, batch_size, text_length, device)
    step_model = torch.compile(model) if torch_compile else model

    def train_step(forward=step_model):
        with autocast(device, precision):
            loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    height, width = config.image_size
    row = {
        "config": config_name,
        "parameters (M)": sum(parameter.numel() for parameter in model.parameters()) / 1e6,
        "batch": batch_size,
        "clips x frames x px": f"{config.num_clips} x {config.frames_per_clip} x {height}",
        # the towers share these sub-configs, and read their attention implementation from them at every call
        "attention (vision / text)": f"{model.config.vision_config._attn_implementation} / "
        f"{model.config.text_config._attn_implementation}",
        "activation checkpointing": "on" if gradient_checkpointing else "off",
        "optimizer": "AdamW, fused" if fused_optimizer else "AdamW",
        "torch.compile": "on" if torch_compile else "off",
        "precision": precision,
    }
    try:
        measurement = measure(train_step, device, steps, count_flops=not torch_compile)
        if torch_compile:
            with flop_counter() as counter:
                train_step(forward=model)
            measurement.flops = counter.get_total_flops()
        # what lives through the step, which it does not allocate: parameters, AdamW's moments, the batch
        resident = sum(parameter.nbytes for parameter in model.parameters())
        states = [value for state in optimizer.state.values() for value in state.values() if torch.is_tensor(value)]
        resident += sum(value.nbytes for value in states)
        resident += sum(tensor.nbytes for tensor in batch.values())
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        return {**row, "s / step": "out of memory"}
    finally:
        del model, optimizer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    flops_per_second = measurement.flops / measurement.seconds
    return {
        **row,
        "s / step": measurement.seconds,
        "samples / s": batch_size / measurement.seconds,
        "GFLOP / step": measurement.flops / 1e9,
        "TFLOP/s": flops_per_second / 1e12,
        "% of matmul peak": 100 * flops_per_second / matmul_peak if matmul_peak else None,
        "peak memory (GiB)": (resident + measurement.peak_bytes) / 2**30,
    }


def main(argv: list[str] | None = None) -> list[Table]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS),
                        help="default: tiny small, and default on CUDA")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--batch_size", type=int, nargs="+",
                        help="for every configuration, a row for each (default: per configuration)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps, after a warm-up step and a counted one")
    parser.add_argument("--text_length", type=int, default=32, help="tokens per text")
    parser.add_argument("--matmul_size", type=int,
                        help="side of the peak matrix multiply (default: 2048 on the CPU, 8192 on CUDA)")
    parser.add_argument("--attn_implementation", nargs="+", choices=["eager", "sdpa"],
                        help="the clip encoder's attention, a row for each (default: the tower's default, SDPA)")
    parser.add_argument("--gradient_checkpointing", nargs="+", choices=["off", "on"], default=["off"],
                        help="activation checkpointing of both towers, a row for each (default: off)")
    parser.add_argument("--fused_optimizer", nargs="+", choices=["off", "on"],
                        help="AdamW's fused update, a row for each (default: on CUDA, as in training)")
    parser.add_argument("--torch_compile", nargs="+", choices=["off", "on"], default=["off"],
                        help="torch.compile of the model (its losses stay eager), a row for each (default: off)")
    parser.add_argument("--quick", action="store_true", help="a check that the script works: tiny, batch 4, 2 steps")
    args = parser.parse_args(argv)
    for name in ("steps", "text_length", "matmul_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.batch_size and min(args.batch_size) < 1:
        parser.error(f"--batch_size must be at least 1, got {min(args.batch_size)}")
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    if args.quick:
        configs, steps, text_length, matmul_size = args.configs or ["tiny"], 2, 16, args.matmul_size or 256
        batch_sizes = dict.fromkeys(CONFIGS, args.batch_size or [4])
    else:
        configs = args.configs or (list(CONFIGS) if device.type == "cuda" else ["tiny", "small"])
        steps, text_length = args.steps, args.text_length
        matmul_size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
        batch_sizes = dict.fromkeys(CONFIGS, args.batch_size) if args.batch_size else {
            name: [size] for name, size in DEFAULT_BATCH_SIZES[device.type].items()
        }

    print(machine_line(device), flush=True)
    peak = matmul_peak_flops(device, precision, matmul_size)
    table = Table(
        title=f"Training step throughput ({device.type}, {precision})",
        columns=COLUMNS,
        notes=[
            f"Matrix multiply peak: {peak / 1e12:.3g} TFLOP/s ({matmul_size} x {matmul_size}, {precision}, fastest of "
            "5). GFLOP / step: forward + backward as FlopCounterMode counts them; peak memory: parameters, AdamW "
            f"state and batch plus the peak the step allocates. Median of {steps} steps, text of {text_length} tokens."
        ],
    )
    if "on" in args.gradient_checkpointing:
        table.notes.append(
            "With activation checkpointing the GFLOP / step include the forward pass that the backward pass "
            "recomputes, so its TFLOP/s and % of matmul peak count that work too: compare the rows by samples / s."
        )
    variants = list(itertools.product(
        args.attn_implementation or [None],
        [value == "on" for value in args.gradient_checkpointing],
        [value == "on" for value in args.fused_optimizer] if args.fused_optimizer else [None],
        [value == "on" for value in args.torch_compile],
    ))
    for name in configs:
        for batch_size, (attention, checkpointing, fused, compiled) in itertools.product(batch_sizes[name], variants):
            row = measure_train_step(
                name, batch_size, device, precision, steps, text_length, peak, attention, checkpointing, fused,
                compiled,
            )
            table.rows.append(row)
            print(
                f"{name}, batch {batch_size}, attention {row['attention (vision / text)']} (vision / text), "
                f"activation checkpointing {row['activation checkpointing']}, {row['optimizer']}, "
                f"torch.compile {row['torch.compile']}: "
                f"{row['s / step']} s / step",
                flush=True,
            )
    table.print()
    return [table]


if __name__ == "__main__":
    main()
