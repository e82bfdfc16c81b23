"""Temporal grounding on a 1-hour video: clip feature extraction throughput, latency of the 2D-TAN head per query, and
the peak memory of its 2D map with 2D-TAN's sparse layout against a dense one, at 64, 128 and 256 positions.

    python benchmarks/grounding.py [--configs small default] [--seconds 3600] [--clip_seconds 1.0]
        [--segment_clips 256] [--chunk_size N] [--positions 64 128 256] [--query_batch_size N]
        [--head_hidden_size N] [--head_num_conv_layers N] [--head_conv_kernel_size N] [--repeats 3]
        [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--quick]

Feature extraction: a video of `--seconds` seconds cut into clips of `--clip_seconds` (the layout of
`LocVTPProcessor(..., task="grounding", grounding_max_clips=None)`: 3600 one-second clips for an hour), as random
pixels at the configuration's size, goes through `LocVTPForTemporalGrounding.get_clip_features` without gradients.
The clips arrive `--segment_clips` at a time (what a decoder hands over; one segment of random pixels is reused) and
the model encodes them `grounding_clip_chunk_size` at a time. The video is timed once, after a warm-up segment; with
`--seconds` under 3600 the time of the hour is extrapolated from the clips per second measured. The configurations:
small (`examples/pretrain.py --vision_model_type vit`'s model, `train_step.py`'s builder) and, by default only on
CUDA, the paper-size one.

The head: `LocVTPTemporalGroundingHead` (default: the config's 2D-TAN head, 512 channels, 8 convolutions of 5 x 5) on
the clip features of a 1-hour video (random, L2-normalised: the head's cost does not depend on their values) and
random sentence embeddings, forward without gradients, for one query and for a batch of `--query_batch_size` queries
on the same video. Each number of positions `N` runs with 2D-TAN's sparse layout (the config's default pooling counts)
and with a dense map (`[N - 1]`: every cell `i <= j` a candidate). The head builds its map `[B, C, N, N]` and
convolves it whole whatever the layout, so the sparse layout has fewer candidates but the same map size: the tables
report what is measured.

On CUDA (chosen automatically when present) everything runs under bf16 autocast; on the CPU in fp32, with positions
64 and 128 by default (at 256 positions one query costs 2D-TAN's head about 7 TFLOP: minutes on a CPU).
"""

import argparse
import gc
import math
import time

import torch
import torch.nn.functional as F
from benchmark_utils import (
    Table,
    autocast,
    is_out_of_memory,
    machine_line,
    measure,
    peak_memory,
    pick_device,
    pick_precision,
    synchronize,
)
from train_step import CONFIGS

from locvtp_hf.configuration_locvtp import LocVTPConfig
from locvtp_hf.modeling_locvtp import LocVTPForTemporalGrounding, LocVTPTemporalGroundingHead


HOUR_SECONDS = 3600
DEFAULT_CLIP_SECONDS = 1.0  # LocVTPVideoProcessor's grounding_clip_seconds
LAYOUTS = ["sparse", "dense"]
EXTRACTION_COLUMNS = [
    "config", "encoder parameters (M)", "frames x px", "chunk", "precision", "clips measured", "s", "clips / s",
    "1-hour video (s)", "peak memory (GiB)",
]
LATENCY_COLUMNS = [
    "positions", "layout", "pooling counts", "candidate cells", "GFLOP / query", "ms, 1 query", "ms / query, batch",
    "queries / s, batch",
]
MEMORY_COLUMNS = [
    "positions", "layout", "candidate cells", "map tensor, 1 query (MiB)", "peak, 1 query (MiB)",
    "peak, batch (MiB)",
]


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_feature_extraction(
    config_name: str,
    num_clips: int,
    hour_clips: int,
    segment_clips: int,
    chunk_size: int | None,
    device: torch.device,
    precision: str,
) -> dict:
    """One row of the extraction table: `num_clips` clips of random pixels through `get_clip_features`, timed once
    after a warm-up segment; the hour's time extrapolated to `hour_clips` clips."""
    config = LocVTPConfig(**CONFIGS[config_name])
    if chunk_size is not None:
        config.grounding_clip_chunk_size = chunk_size
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(config).to(device).eval()
    height, width = config.image_size
    segment_length = min(segment_clips, num_clips)
    generator = torch.Generator().manual_seed(0)
    segment = torch.randn(1, segment_length, config.frames_per_clip, 3, height, width, generator=generator).to(device)
    row = {
        "config": config_name,
        "encoder parameters (M)": sum(parameter.numel() for parameter in model.locvtp.parameters()) / 1e6,
        "frames x px": f"{config.frames_per_clip} x {height}",
        "chunk": config.grounding_clip_chunk_size,
        "precision": precision,
        "clips measured": num_clips,
    }

    def encode(length: int) -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):
            return model.get_clip_features(segment[:, :length])

    try:
        encode(segment_length)  # warm-up
        with peak_memory(device) as memory:
            encode(segment_length)
        synchronize(device)
        start = time.perf_counter()
        features = [encode(min(segment_length, num_clips - first)) for first in range(0, num_clips, segment_length)]
        torch.cat(features, dim=1)
        synchronize(device)
        seconds = time.perf_counter() - start
        resident = sum(parameter.nbytes for parameter in model.locvtp.parameters()) + segment.nbytes
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        return {**row, "s": "out of memory"}
    finally:
        del model, segment
        _release(device)
    return {
        **row,
        "s": seconds,
        "clips / s": num_clips / seconds,
        "1-hour video (s)": hour_clips * seconds / num_clips,
        "peak memory (GiB)": (resident + memory.bytes) / 2**30,
    }


def grounding_head_config(
    config_name: str, num_positions: int, layout: str, hidden_size: int | None, num_conv_layers: int | None,
    conv_kernel_size: int | None,
) -> LocVTPConfig:
    """The configuration's head at `num_positions` positions, with the default sparse pooling counts or a dense map;
    the head's width, depth and kernel from the config's defaults unless given."""
    sizes = {
        "grounding_hidden_size": hidden_size,
        "grounding_num_conv_layers": num_conv_layers,
        "grounding_conv_kernel_size": conv_kernel_size,
    }
    return LocVTPConfig(
        **CONFIGS[config_name],
        grounding_num_positions=num_positions,
        grounding_pooling_counts=[num_positions - 1] if layout == "dense" else None,
        **{name: value for name, value in sizes.items() if value is not None},
    )


def measure_head(
    config: LocVTPConfig,
    layout: str,
    video_features: torch.Tensor,
    query_batch_size: int,
    device: torch.device,
    precision: str,
    repeats: int,
) -> tuple[dict, dict]:
    """The latency row and the memory row of one head (`layout`: "sparse" or "dense"): its forward on
    `video_features` (`[1, num_clips, D]`) for one query and for `query_batch_size` queries."""
    torch.manual_seed(0)
    head = LocVTPTemporalGroundingHead(config).to(device).eval()
    num_positions = config.grounding_num_positions
    candidates = int(head.moment_mask().sum())
    map_element_bytes = 2 if precision == "bf16" else 4
    latency = {
        "positions": num_positions,
        "layout": layout,
        "pooling counts": str(config.grounding_pooling_counts),
        "candidate cells": candidates,
    }
    memory = {
        "positions": num_positions,
        "layout": layout,
        "candidate cells": candidates,
        "map tensor, 1 query (MiB)": config.grounding_hidden_size * num_positions**2 * map_element_bytes / 2**20,
    }
    generator = torch.Generator().manual_seed(0)
    text_embeds = F.normalize(torch.randn(query_batch_size, config.projection_dim, generator=generator), dim=-1)
    text_embeds = text_embeds.to(device)
    measurements = {}
    for batch_size in sorted({1, query_batch_size}):
        features = video_features.expand(batch_size, -1, -1)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        queries = text_embeds[:batch_size]

        def forward():
            with torch.no_grad(), autocast(device, precision):
                return head(features, mask, queries)

        try:
            measurements[batch_size] = measure(forward, device, repeats, count_flops=True)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            measurements[batch_size] = None
            _release(device)
    del head
    _release(device)

    single, batch = measurements[1], measurements[query_batch_size]
    if single is None:
        latency["ms, 1 query"] = memory["peak, 1 query (MiB)"] = "out of memory"
    else:
        latency["GFLOP / query"] = single.flops / 1e9
        latency["ms, 1 query"] = 1000 * single.seconds
        memory["peak, 1 query (MiB)"] = single.peak_bytes / 2**20
    if batch is None:
        latency["ms / query, batch"] = memory["peak, batch (MiB)"] = "out of memory"
    else:
        latency["ms / query, batch"] = 1000 * batch.seconds / query_batch_size
        latency["queries / s, batch"] = query_batch_size / batch.seconds
        memory["peak, batch (MiB)"] = batch.peak_bytes / 2**20
    return latency, memory


def main(argv: list[str] | None = None) -> list[Table]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS),
                        help="feature extraction models (default: small, and default on CUDA)")
    parser.add_argument("--seconds", type=float, default=HOUR_SECONDS,
                        help="length of the video whose features are extracted; under 3600 the hour is extrapolated")
    parser.add_argument("--clip_seconds", type=float, default=DEFAULT_CLIP_SECONDS,
                        help="seconds per clip (the processor's grounding_clip_seconds)")
    parser.add_argument("--segment_clips", type=int, default=256, help="decoded clips handed to the model at once")
    parser.add_argument("--chunk_size", type=int,
                        help="clips encoded at once (default: the config's grounding_clip_chunk_size, 32)")
    parser.add_argument("--positions", type=int, nargs="+",
                        help="positions N of the head's map (default: 64 128 256 on CUDA, 64 128 on the CPU)")
    parser.add_argument("--query_batch_size", type=int,
                        help="queries of the batched head forward (default: 32 on CUDA, 2 on the CPU)")
    parser.add_argument("--head_config", choices=list(CONFIGS), default="default",
                        help="configuration whose projection_dim the head reads (default: the paper-size one)")
    parser.add_argument("--head_hidden_size", type=int, help="channels of the map (default: the config's, 512)")
    parser.add_argument("--head_num_conv_layers", type=int,
                        help="convolutions over the map (default: the config's, 8; 2D-TAN's ActivityNet head: 4)")
    parser.add_argument("--head_conv_kernel_size", type=int,
                        help="their kernel size (default: the config's, 5; 2D-TAN's ActivityNet head: 9)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed head forwards, after a warm-up and a counted one")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--quick", action="store_true",
                        help="a check that the script works: tiny config, 16 s of video, heads of width 16 at 32 and "
                        "64 positions")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    on_cuda = device.type == "cuda"
    if args.quick:
        configs, seconds, segment_clips, chunk_size = args.configs or ["tiny"], 16.0, 8, 4
        positions, query_batch_size, head_config_name, repeats = [32, 64], 2, "tiny", 1
        head_sizes = (16, 2, 3)
    else:
        configs = args.configs or (["small", "default"] if on_cuda else ["small"])
        seconds, segment_clips, chunk_size = args.seconds, args.segment_clips, args.chunk_size
        positions = args.positions or ([64, 128, 256] if on_cuda else [64, 128])
        query_batch_size, head_config_name = args.query_batch_size or (32 if on_cuda else 2), args.head_config
        head_sizes = (args.head_hidden_size, args.head_num_conv_layers, args.head_conv_kernel_size)
        repeats = args.repeats
    for name, value in (("--segment_clips", segment_clips), ("--chunk_size", chunk_size),
                        ("--positions", min(positions)), ("--query_batch_size", query_batch_size),
                        ("--head_hidden_size", head_sizes[0]), ("--head_num_conv_layers", head_sizes[1]),
                        ("--head_conv_kernel_size", head_sizes[2]), ("--repeats", repeats)):
        if value is not None and value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    if not args.clip_seconds > 0:
        parser.error(f"--clip_seconds must be positive, got {args.clip_seconds}")
    num_clips = math.floor(seconds / args.clip_seconds)
    if num_clips < 1:
        parser.error(f"--seconds {seconds} is shorter than one clip of --clip_seconds {args.clip_seconds}")
    hour_clips = math.floor(HOUR_SECONDS / args.clip_seconds)

    print(machine_line(device), flush=True)
    extraction = Table(
        title=f"Grounding: clip feature extraction of a 1-hour video ({device.type}, {precision})",
        columns=EXTRACTION_COLUMNS,
        notes=[
            f"get_clip_features without gradients on random pixels, clips of {args.clip_seconds:g} s handed over "
            f"{segment_clips} at a time and encoded `chunk` at a time; the video timed once after a warm-up segment. "
            f"1-hour video: {hour_clips} clips at the clips / s measured"
            + (f" (extrapolated from {num_clips} clips)." if num_clips != hour_clips else ".")
            + " Peak memory: the encoder's parameters and one segment of pixels plus the peak of encoding it."
        ],
    )
    for name in configs:
        row = measure_feature_extraction(name, num_clips, hour_clips, segment_clips, chunk_size, device, precision)
        extraction.rows.append(row)
        print(f"{name}: {row.get('clips / s', row['s'])} clips / s", flush=True)

    head_config_fields = dict(hidden_size=head_sizes[0], num_conv_layers=head_sizes[1], conv_kernel_size=head_sizes[2])
    example = grounding_head_config(head_config_name, positions[0], "dense", **head_config_fields)
    head_shape = (
        f"{example.grounding_hidden_size} channels, {example.grounding_num_conv_layers} convolutions of "
        f"{example.grounding_conv_kernel_size} x {example.grounding_conv_kernel_size}"
    )
    generator = torch.Generator().manual_seed(0)
    video_features = F.normalize(torch.randn(1, hour_clips, example.projection_dim, generator=generator), dim=-1)
    video_features = video_features.to(device)
    latency = Table(
        title=f"Grounding: 2D-TAN head latency per query on a 1-hour video ({head_shape}; {device.type}, {precision})",
        columns=LATENCY_COLUMNS,
        notes=[
            f"Head forward without gradients on the features of {hour_clips} clips: one query, and a batch of "
            f"{query_batch_size} queries on the same video (per query). Median of {repeats}. GFLOP as "
            "FlopCounterMode counts them (convolutions and linear layers): the convolutions run over the whole "
            "N x N map, so the sparse layout saves candidates, not FLOPs."
        ],
    )
    memory = Table(
        title=f"Grounding: peak memory of the 2D map, sparse against dense ({head_shape}; {device.type}, {precision})",
        columns=MEMORY_COLUMNS,
        notes=[
            "Peak bytes of tensors the head's forward allocates above its inputs and parameters (see "
            "benchmark_utils.peak_memory); map tensor: one [C, N, N] map of a query. The head allocates the map dense "
            f"whatever the layout. Batch: {query_batch_size} queries."
        ],
    )
    for num_positions in positions:
        for layout in LAYOUTS:
            config = grounding_head_config(head_config_name, num_positions, layout, **head_config_fields)
            latency_row, memory_row = measure_head(
                config, layout, video_features, query_batch_size, device, precision, repeats
            )
            latency.rows.append(latency_row)
            memory.rows.append(memory_row)
            print(f"{num_positions} positions, {layout}: {latency_row['ms, 1 query']} ms per query", flush=True)
    for table in (extraction, latency, memory):
        table.print()
    return [extraction, latency, memory]


if __name__ == "__main__":
    main()
