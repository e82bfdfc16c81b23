"""Time and peak memory of the LocVTP losses (forward + backward) against the encoders' forward + backward, as the
global batch grows.

    python benchmarks/losses.py [--config tiny|small|default] [--global_batch_sizes 64 128 ... 4096]
        [--text_length 32] [--chunk_size 64] [--unchunked_max 1024] [--encoder_batch_size N] [--repeats 3]
        [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--quick]

One process holds the whole global batch of `N` samples: random L2-normalised embeddings of the configuration's
shapes (`N x num_clips` clips, `N x text_length` words, some of them padding) go through each loss term on its own:
the coarse video-sentence term, the fine-grained clip-word term (chunked as configured, and for `N <=
--unchunked_max` also unchunked, to show what chunking saves), and the temporal term with its context head. The
encoders (clip encoder + text encoder, forward and backward) are measured at `--encoder_batch_size` and twice that,
and extrapolated linearly to `N` samples: they cost the same per sample whatever the batch, while the fine and
temporal terms score every clip and word against the whole global batch and grow with `N^2`.

On CUDA (chosen automatically when present) everything runs under bf16 autocast with the paper-size (default)
configuration; on the CPU in fp32 with the small one (`examples/pretrain.py --vision_model_type vit`'s model) and `N`
up to 1024. Memory is
the peak of tensor bytes above the inputs (see `benchmark_utils.peak_memory`).
"""

import argparse

import torch
import torch.nn.functional as F
from benchmark_utils import Table, autocast, is_out_of_memory, machine_line, measure, pick_device, pick_precision
from train_step import CONFIGS, random_batch

from locvtp_hf import LocVTPConfig, LocVTPLoss, LocVTPModel
from locvtp_hf.modeling_locvtp import LocVTPContextProjectionHead


TERM_WEIGHTS = {
    "coarse": dict(coarse_weight=1.0, fine_weight=0.0, temporal_weight=0.0),
    "fine": dict(coarse_weight=0.0, fine_weight=1.0, temporal_weight=0.0),
    "temporal": dict(coarse_weight=0.0, fine_weight=0.0, temporal_weight=1.0),
}
CASES = ["coarse", "fine", "temporal", "fine, unchunked"]


def random_embeddings(config: LocVTPConfig, global_batch: int, text_length: int, device: torch.device) -> dict:
    """The inputs of `LocVTPLoss` for `global_batch` samples, as leaves that take gradients: clips `[N, T, D]`,
    videos and sentences `[N, D]`, words `[N, L, D]` with between `L / 2` and `L - 2` real words each."""
    generator = torch.Generator().manual_seed(0)
    size = (global_batch, config.num_clips, config.projection_dim)
    clips = F.normalize(torch.randn(size, generator=generator), dim=-1)
    num_words = torch.randint(text_length // 2, text_length - 1, (global_batch, 1), generator=generator)
    positions = torch.arange(text_length)[None, :]
    word_mask = (positions >= 1) & (positions <= num_words)  # after [CLS], before [SEP] and padding
    words = F.normalize(torch.randn(global_batch, text_length, config.projection_dim, generator=generator), dim=-1)
    embeddings = {
        "clip_embeds": clips,
        "video_embeds": F.normalize(clips.mean(1), dim=-1),
        "text_embeds": F.normalize(torch.randn(global_batch, config.projection_dim, generator=generator), dim=-1),
        "word_embeds": words * word_mask[..., None],
    }
    inputs = {name: value.to(device).requires_grad_() for name, value in embeddings.items()}
    return {**inputs, "word_mask": word_mask.to(device)}


def measure_loss_term(
    case: str,
    config: LocVTPConfig,
    inputs: dict,
    chunk_size: int,
    device: torch.device,
    precision: str,
    repeats: int,
):
    """The `Measurement` of one term's forward + backward, or `"out of memory"`."""
    term = case.split(",")[0]
    loss_fn = LocVTPLoss(**TERM_WEIGHTS[term], chunk_size=None if case == "fine, unchunked" else chunk_size)
    head = LocVTPContextProjectionHead(config).to(device)
    logit_scale = torch.tensor(1 / 0.07, device=device, requires_grad=True)
    leaves = [logit_scale, *head.parameters(), *(value for value in inputs.values() if value.requires_grad)]

    def forward_backward():
        with autocast(device, precision):
            loss = loss_fn(**inputs, logit_scale=logit_scale, context_head=head).loss
        loss.backward()
        for leaf in leaves:
            leaf.grad = None

    try:
        return measure(forward_backward, device, repeats)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        for leaf in leaves:
            leaf.grad = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return "out of memory"


def measure_encoders(
    config: LocVTPConfig, batch_sizes: tuple[int, int], text_length: int, device: torch.device, precision: str,
    repeats: int,
) -> list:
    """The `Measurement`s of the clip and text encoders' forward + backward (with the projections) at each batch
    size."""
    torch.manual_seed(0)
    model = LocVTPModel(config).to(device).train()
    measurements = []
    for batch_size in batch_sizes:
        batch = random_batch(config, batch_size, text_length, device)

        def forward_backward():
            with autocast(device, precision):
                video = model.get_video_features(batch["pixel_values_videos"])
                text = model.get_text_features(batch["input_ids"], attention_mask=batch["attention_mask"])
                total = video.clip_embeds.sum() + text.pooler_output.sum() + text.word_embeds.sum()
            total.backward()
            model.zero_grad(set_to_none=True)

        measurements.append(measure(forward_backward, device, repeats))
    return measurements


def linear_in_batch(values: tuple[float, float], batch_sizes: tuple[int, int], batch_size: int) -> float:
    """The line through two (batch size, value) points at `batch_size`; a slope below 0 (timing noise) is taken as
    0."""
    slope = max((values[1] - values[0]) / (batch_sizes[1] - batch_sizes[0]), 0.0)
    return values[1] + slope * (batch_size - batch_sizes[1])


def main(argv: list[str] | None = None) -> list[Table]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=list(CONFIGS), help="default: default on CUDA, small on the CPU")
    parser.add_argument("--global_batch_sizes", type=int, nargs="+",
                        help="default: 64 to 4096 on CUDA, 64 to 1024 on the CPU (powers of 2)")
    parser.add_argument("--text_length", type=int, default=32, help="tokens per text, [CLS] and [SEP] included")
    parser.add_argument("--chunk_size", type=int, default=LocVTPConfig().loss_chunk_size,
                        help="LocVTPLoss(chunk_size=...), the config's loss_chunk_size")
    parser.add_argument("--unchunked_max", type=int, default=1024,
                        help="largest global batch for which the fine term also runs unchunked")
    parser.add_argument("--encoder_batch_size", type=int,
                        help="the encoders run at this batch and twice it (default: 4 on CUDA, 16 on the CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case, after a warm-up and a memory run")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--quick", action="store_true",
                        help="a check that the script works: tiny config, global batches 8 and 16, chunks of 4")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    on_cuda = device.type == "cuda"
    if args.quick:
        config_name, sizes, text_length, chunk_size = args.config or "tiny", [8, 16], 8, 4
        unchunked_max, encoder_batch_size, repeats = 16, 2, 1
    else:
        config_name = args.config or ("default" if on_cuda else "small")
        sizes = args.global_batch_sizes or [2**power for power in range(6, 13 if on_cuda else 11)]
        text_length, chunk_size, unchunked_max = args.text_length, args.chunk_size, args.unchunked_max
        encoder_batch_size, repeats = args.encoder_batch_size or (4 if on_cuda else 16), args.repeats
    for name, value in (("--global_batch_sizes", min(sizes)), ("--chunk_size", chunk_size),
                        ("--encoder_batch_size", encoder_batch_size), ("--repeats", repeats)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if text_length < 4:
        parser.error(f"--text_length must be at least 4 ([CLS], 2 words, [SEP]), got {text_length}")

    print(machine_line(device), flush=True)
    config = LocVTPConfig(**CONFIGS[config_name])
    encoder_batches = (encoder_batch_size, 2 * encoder_batch_size)
    encoders = measure_encoders(config, encoder_batches, text_length, device, precision, repeats)
    shapes = (
        f"{config_name} configuration ({config.num_clips} clips, {text_length} tokens, {config.projection_dim}-d), "
        f"{device.type}, {precision}"
    )
    times = Table(
        title=f"LocVTP losses against the encoders: milliseconds per forward + backward, {shapes}",
        columns=["global batch", *CASES, "encoders", "losses % of step"],
        notes=[
            f"Each term alone; the fine and temporal terms in chunks of {chunk_size} samples (LocVTPLoss chunk_size). "
            f"Encoders: clip and text encoder with projections, measured at {encoder_batches[0]} and "
            f"{encoder_batches[1]} samples, extrapolated linearly. Losses % of step: the three terms against terms + "
            f"encoders. Median of {repeats}."
        ],
    )
    memory = Table(
        title=f"LocVTP losses against the encoders: peak memory (MiB) above the inputs, {shapes}",
        columns=["global batch", *CASES, "encoders"],
        notes=[
            "Peak bytes of tensors allocated during the forward + backward (gradients included). Encoders: "
            f"measured at {encoder_batches[0]} and {encoder_batches[1]} samples and extrapolated linearly, as if the "
            "whole global batch went through the encoders at once (it is split over processes in training)."
        ],
    )
    for global_batch in sizes:
        inputs = random_embeddings(config, global_batch, text_length, device)
        time_row, memory_row = {"global batch": global_batch}, {"global batch": global_batch}
        for case in CASES:
            if case == "fine, unchunked" and global_batch > unchunked_max:
                continue
            result = measure_loss_term(case, config, inputs, chunk_size, device, precision, repeats)
            if result == "out of memory":
                time_row[case] = memory_row[case] = result
            else:
                time_row[case], memory_row[case] = 1000 * result.seconds, result.peak_bytes / 2**20
        encoder_seconds = linear_in_batch([m.seconds for m in encoders], encoder_batches, global_batch)
        encoder_bytes = linear_in_batch([m.peak_bytes for m in encoders], encoder_batches, global_batch)
        time_row["encoders"], memory_row["encoders"] = 1000 * encoder_seconds, encoder_bytes / 2**20
        loss_times = [time_row[term] for term in TERM_WEIGHTS]
        if all(isinstance(value, float) for value in loss_times):
            time_row["losses % of step"] = 100 * sum(loss_times) / (sum(loss_times) + time_row["encoders"])
        times.rows.append(time_row)
        memory.rows.append(memory_row)
        print(f"global batch {global_batch}: {time_row}", flush=True)
        del inputs
    times.print()
    memory.print()
    return [times, memory]


if __name__ == "__main__":
    main()
