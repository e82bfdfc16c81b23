"""Time and peak memory of the LocVTP losses (forward + backward) against the encoders' forward + backward, as the
global batch grows.

    python benchmarks/losses.py [--config tiny|small|default] [--global_batch_sizes 64 128 ... 4096]
        [--text_length 32] [--chunk_size 64] [--unchunked_max 1024] [--before_max 1024] [--encoder_batch_size N]
        [--repeats 3] [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--quick]

One process holds the whole global batch of `N` samples: random L2-normalised embeddings of the configuration's
shapes (`N x num_clips` clips, `N x text_length` words, some of them padding) go through each loss term on its own:
the coarse video-sentence term, the fine-grained clip-word term (chunked as configured, and for `N <=
--unchunked_max` also unchunked, to show what chunking saves), and the temporal term with its context head. For `N
<= --before_max` the fine and temporal terms also run on `baseline_multi_positive_nce`, the implementation from
before issue 16 kept below as the "before" reference, side by side with the package's in the same run. The
encoders (clip encoder + text encoder, forward and backward) are measured on one micro-batch of
`--encoder_batch_size` samples (a device's batch in training) and counted `N / encoder_batch_size` times, since a
global batch goes through the encoders in such micro-batches, while the fine and temporal terms score every clip and
word against the whole global batch and grow with `N^2`. A second table counts
the fine and temporal terms' matrix-multiply FLOPs and sets them against the machine's matrix-multiply peak,
measured in the same run: the share of the step the two terms would still take if their products ran at the peak.

On CUDA (chosen automatically when present) everything runs under bf16 autocast with the paper-size (default)
configuration (the package's clip-word logits are float32 even there); on the CPU in fp32 with the small one
(`examples/pretrain.py --vision_model_type vit`'s model) and `N` up to 1024. Memory is the peak of tensor bytes above
the inputs (see `benchmark_utils.peak_memory`).
"""

import argparse
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from benchmark_utils import (
    Table, autocast, is_out_of_memory, machine_line, matmul_peak_flops, measure, pick_device, pick_precision
)
from train_step import CONFIGS, random_batch

import locvtp_hf.loss
from locvtp_hf import LocVTPConfig, LocVTPLoss, LocVTPModel
from locvtp_hf.modeling_locvtp import LocVTPContextProjectionHead


TERM_WEIGHTS = {
    "coarse": dict(coarse_weight=1.0, fine_weight=0.0, temporal_weight=0.0),
    "fine": dict(coarse_weight=0.0, fine_weight=1.0, temporal_weight=0.0),
    "temporal": dict(coarse_weight=0.0, fine_weight=0.0, temporal_weight=1.0),
}
CASES = ["coarse", "fine", "temporal", "fine, unchunked", "fine, before", "temporal, before"]


def baseline_multi_positive_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_mask: torch.Tensor,
    positives: torch.Tensor,
    offset: int,
    temperature: float,
    chunk_size: int | None = None,
    own_negatives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    THE BASELINE, not the package's code: `locvtp_hf.loss.multi_positive_nce` as it was before issue 16 (commit
    7d31e08), kept to time the fine and temporal terms "before" in the same run. It builds `[chunk_size, Q, G, K]`
    logits with boolean masks of the same shape and recomputes each chunk in the backward pass. It returns what the
    package's function returns, `(loss_sum, num_valid)`, so `LocVTPLoss` runs on it unchanged.

    Arguments as the package's function.
    """
    batch_size = queries.shape[0]
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (or None for no chunking), got {chunk_size}.")
    own = torch.arange(batch_size, device=queries.device) + offset
    if own_negatives is None:
        own_negatives = positives.new_zeros(batch_size, keys.shape[1])
    if chunk_size is None or batch_size <= chunk_size:
        losses = _baseline_chunk(queries, keys, key_mask, positives, own, own_negatives, temperature)
    else:
        losses = torch.cat(
            [
                checkpoint(
                    _baseline_chunk,
                    queries[start : start + chunk_size],
                    keys,
                    key_mask,
                    positives[start : start + chunk_size],
                    own[start : start + chunk_size],
                    own_negatives[start : start + chunk_size],
                    temperature,
                    use_reentrant=False,
                )
                for start in range(0, batch_size, chunk_size)
            ]
        )
    return losses.sum(), positives.any(-1).sum()


def _baseline_chunk(
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_mask: torch.Tensor,
    positives: torch.Tensor,
    own: torch.Tensor,
    own_negatives: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """The baseline's `[B, Q]` losses for queries whose own samples are the key rows `own` (`[B]`)."""
    rows = torch.arange(queries.shape[0], device=queries.device)
    logits = torch.einsum("bqd,gkd->bqgk", queries, keys).float() / temperature
    fill = torch.finfo(logits.dtype).min  # finite, so that queries without positives get zero (not NaN) gradients
    own_logits = logits[rows, :, own]  # [B, Q, K], a copy
    positive_logits = own_logits.masked_fill(~positives, fill)
    own_negative_logits = own_logits.masked_fill(positives | ~own_negatives[:, None, :], fill)
    is_other = torch.ones(queries.shape[0], keys.shape[0], dtype=torch.bool, device=queries.device)
    is_other[rows, own] = False
    negatives = key_mask[None, :, :] & is_other[:, :, None]  # [B, G, K]
    # in place: the logits are the largest tensor here, and nothing saved for backward holds them
    negative_logits = logits.masked_fill_(~negatives[:, None], fill).flatten(2)
    numerator = positive_logits.logsumexp(-1)
    negatives_sum = torch.logaddexp(negative_logits.logsumexp(-1), own_negative_logits.logsumexp(-1))
    denominator = torch.logaddexp(numerator, negatives_sum)
    return (denominator - numerator).masked_fill(~positives.any(-1), 0.0)



@contextmanager
def baseline_implementation():
    """`LocVTPLoss` runs on the baseline `multi_positive_nce` inside the block."""
    current = locvtp_hf.loss.multi_positive_nce
    locvtp_hf.loss.multi_positive_nce = baseline_multi_positive_nce
    try:
        yield
    finally:
        locvtp_hf.loss.multi_positive_nce = current


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
    implementation = baseline_implementation if case.endswith("before") else nullcontext
    head = LocVTPContextProjectionHead(config).to(device)
    logit_scale = torch.tensor(1 / 0.07, device=device, requires_grad=True)
    leaves = [logit_scale, *head.parameters(), *(value for value in inputs.values() if value.requires_grad)]

    def forward_backward():
        with autocast(device, precision), implementation():
            loss = loss_fn(**inputs, logit_scale=logit_scale, context_head=head).loss
        loss.backward()
        for leaf in leaves:
            leaf.grad = None

    try:
        return measure(forward_backward, device, repeats, count_flops=True)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        for leaf in leaves:
            leaf.grad = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return "out of memory"


def measure_encoders(
    config: LocVTPConfig, batch_size: int, text_length: int, device: torch.device, precision: str, repeats: int
):
    """The `Measurement` of the clip and text encoders' forward + backward (with the projections) on one micro-batch
    of `batch_size` samples."""
    torch.manual_seed(0)
    model = LocVTPModel(config).to(device).train()
    batch = random_batch(config, batch_size, text_length, device)

    def forward_backward():
        with autocast(device, precision):
            video = model.get_video_features(batch["pixel_values_videos"])
            text = model.get_text_features(batch["input_ids"], attention_mask=batch["attention_mask"])
            total = video.clip_embeds.sum() + text.pooler_output.sum() + text.word_embeds.sum()
        total.backward()
        model.zero_grad(set_to_none=True)

    return measure(forward_backward, device, repeats)


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
    parser.add_argument("--before_max", type=int, default=1024,
                        help="largest global batch for which the baseline (before) fine and temporal terms run")
    parser.add_argument("--encoder_batch_size", type=int,
                        help="the encoders' micro-batch, a device's batch in training (default: 8 on CUDA, the "
                        "default configuration's per-GPU batch; 32 on the CPU, examples/pretrain.py's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case, after a warm-up and a memory run")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--quick", action="store_true",
                        help="a check that the script works: tiny config, global batches 32 and 64, chunks of 4")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    on_cuda = device.type == "cuda"
    if args.quick:
        config_name, sizes, text_length, chunk_size = args.config or "tiny", [32, 64], 8, 4
        unchunked_max, before_max, encoder_batch_size, repeats = 64, 64, 2, 1
    else:
        config_name = args.config or ("default" if on_cuda else "small")
        sizes = args.global_batch_sizes or [2**power for power in range(6, 13 if on_cuda else 11)]
        text_length, chunk_size, unchunked_max = args.text_length, args.chunk_size, args.unchunked_max
        before_max = args.before_max
        encoder_batch_size, repeats = args.encoder_batch_size or (8 if on_cuda else 32), args.repeats
    for name, value in (("--global_batch_sizes", min(sizes)), ("--chunk_size", chunk_size),
                        ("--encoder_batch_size", encoder_batch_size), ("--repeats", repeats)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if text_length < 4:
        parser.error(f"--text_length must be at least 4 ([CLS], 2 words, [SEP]), got {text_length}")

    print(machine_line(device), flush=True)
    config = LocVTPConfig(**CONFIGS[config_name])
    encoders = measure_encoders(config, encoder_batch_size, text_length, device, precision, repeats)
    shapes = (
        f"{config_name} configuration ({config.num_clips} clips, {text_length} tokens, {config.projection_dim}-d), "
        f"{device.type}, {precision}"
    )
    times = Table(
        title=f"LocVTP losses against the encoders: milliseconds per forward + backward, {shapes}",
        columns=["global batch", *CASES, "encoders", "losses % of step", "fine + temporal % of step",
                 "before: fine + temporal % of step"],
        notes=[
            f"Each term alone; the fine and temporal terms in chunks of {chunk_size} samples (LocVTPLoss chunk_size). "
            "Before: the same terms on the baseline multi_positive_nce (before issue 16, kept in "
            f"benchmarks/losses.py), same chunks, up to a global batch of {before_max}. "
            f"Encoders: clip and text encoder with projections, measured on a micro-batch of {encoder_batch_size} "
            "samples and counted once per micro-batch of the global batch. Losses % of step: the three terms "
            "against terms + encoders; fine + temporal % of step: those two against the same step (before: with the "
            f"baseline's fine and temporal times). Median of {repeats}."
        ],
    )
    matmul_peak = matmul_peak_flops(device, precision, 2048)
    floor = Table(
        title=f"Fine and temporal terms against the matrix-multiply peak, {shapes}",
        columns=["global batch", "fine GFLOP", "temporal GFLOP", "fine % of matmul peak", "temporal % of matmul peak",
                 "fine + temporal at matmul peak (ms)", "at matmul peak: fine + temporal % of step"],
        notes=[
            f"Matrix multiply peak: {matmul_peak / 1e12:.3g} TFLOP/s (2048 x 2048, {precision}, fastest of 5), "
            "measured in this run. GFLOP: forward + backward of the chunked terms as `benchmark_utils.flop_counter` "
            "counts them (matrix multiplies, the in-place ones included; the exponentials and other elementwise work "
            "are not counted). At matmul peak: the "
            "milliseconds those FLOPs take at the peak, and that time's share of the step (with the coarse term and "
            "the encoders as measured): the least share the two terms could have without computing fewer products."
        ],
    )
    memory = Table(
        title=f"LocVTP losses against the encoders: peak memory (MiB) above the inputs, {shapes}",
        columns=["global batch", *CASES, "encoders"],
        notes=[
            "Peak bytes of tensors allocated during the forward + backward (gradients included). Encoders: "
            f"the peak of one micro-batch of {encoder_batch_size} samples (the global batch goes through the "
            "encoders in such micro-batches, over processes and accumulation steps)."
        ],
    )
    for global_batch in sizes:
        inputs = random_embeddings(config, global_batch, text_length, device)
        time_row, memory_row, flops = {"global batch": global_batch}, {"global batch": global_batch}, {}
        for case in CASES:
            if (case == "fine, unchunked" and global_batch > unchunked_max) or (
                case.endswith("before") and global_batch > before_max
            ):
                continue
            result = measure_loss_term(case, config, inputs, chunk_size, device, precision, repeats)
            if result == "out of memory":
                time_row[case] = memory_row[case] = result
            else:
                time_row[case], memory_row[case] = 1000 * result.seconds, result.peak_bytes / 2**20
                flops[case] = result.flops
        micro_batches = global_batch / encoder_batch_size
        time_row["encoders"] = 1000 * encoders.seconds * micro_batches
        memory_row["encoders"] = encoders.peak_bytes / 2**20
        for column, terms in (("losses % of step", ["coarse", "fine", "temporal"]),
                              ("fine + temporal % of step", ["fine", "temporal"]),
                              ("before: fine + temporal % of step", ["fine, before", "temporal, before"])):
            step = [time_row.get(term) for term in ("coarse", "fine", "temporal", "encoders")]
            if column.startswith("before"):
                step[1:3] = [time_row.get(term) for term in terms]
            counted = [time_row.get(term) for term in terms]
            if all(isinstance(value, float) for value in step + counted):
                time_row[column] = 100 * sum(counted) / sum(step)
        floor_row = {"global batch": global_batch}
        for term in ("fine", "temporal"):
            if isinstance(time_row.get(term), float):
                floor_row[f"{term} GFLOP"] = flops[term] / 1e9
                floor_row[f"{term} % of matmul peak"] = 100 * flops[term] / matmul_peak / (time_row[term] / 1000)
        if all(term in flops for term in ("fine", "temporal")) and isinstance(time_row.get("coarse"), float):
            at_peak = 1000 * (flops["fine"] + flops["temporal"]) / matmul_peak
            floor_row["fine + temporal at matmul peak (ms)"] = at_peak
            floor_row["at matmul peak: fine + temporal % of step"] = (
                100 * at_peak / (at_peak + time_row["coarse"] + time_row["encoders"])
            )
        times.rows.append(time_row)
        floor.rows.append(floor_row)
        memory.rows.append(memory_row)
        print(f"global batch {global_batch}: {time_row}", flush=True)
        del inputs
    times.print()
    floor.print()
    memory.print()
    return [times, floor, memory]


if __name__ == "__main__":
    main()
