"""The geometry of 2D-TAN's temporal map, shared by the configuration, the grounding model, its post-processing and
its metrics: which cells are candidate moments, their times in seconds, clip features resampled to the map's
positions, and the temporal IoU of moments. Pure torch: the model folder imports it."""

import torch


IOU_UNIONS = ("hull", "sum")


def pooling_counts_reach(pooling_counts: list[int]) -> int:
    """The longest span, `j - i`, among the candidate moments `(i, j)` that 2D-TAN's pooling counts make."""
    return sum(count * 2**group for group, count in enumerate(pooling_counts))


def default_pooling_counts(num_positions: int) -> list[int]:
    """2D-TAN's sparse layout for a map of `num_positions`: 15 dense diagonals, then groups of 8 until it is full."""
    counts = [min(15, max(num_positions - 1, 1))]
    while pooling_counts_reach(counts) < num_positions - 1:
        counts.append(8)
    return counts


def candidate_diagonals(num_positions: int, pooling_counts: list[int]) -> list[tuple[int, int]]:
    """
    The diagonals of the 2D map, beyond the main one, that hold candidate moments, as 2D-TAN's pooling counts lay them
    out: group `g` adds `pooling_counts[g]` diagonals `stride = 2**g` apart, each keeping the moments that start at a
    multiple of `stride`.

    Returns:
        `list[tuple[int, int]]`: `(offset, stride)` per diagonal: its cells are `(i, i + offset)` for `i` in
        `range(0, num_positions - offset, stride)`.
    """
    diagonals, offset = [], 0
    for group, count in enumerate(pooling_counts):
        stride = 2**group
        for _ in range(count):
            offset += stride
            if offset >= num_positions:
                return diagonals
            diagonals.append((offset, stride))
    return diagonals


def candidate_moment_times(num_positions: int, video_durations: torch.Tensor) -> torch.Tensor:
    """
    `(start, end)` in seconds of every cell of the 2D map: cell `(i, j)` covers `i / N` to `(j + 1) / N` of the video
    (also for the cells that are not candidates).

    Args:
        num_positions (`int`): `N`.
        video_durations (`[B]`): durations in seconds.

    Returns:
        `[B, N, N, 2]` float tensor.
    """
    edges = torch.arange(num_positions + 1, device=video_durations.device, dtype=video_durations.dtype)
    edges = edges / num_positions
    unit_moments = torch.stack(torch.broadcast_tensors(edges[:-1, None], edges[None, 1:]), dim=-1)
    return unit_moments * video_durations[:, None, None, None]


def pool_clips_to_positions(features: torch.Tensor, mask: torch.Tensor, num_positions: int) -> torch.Tensor:
    """
    Resample each video's clip features to `num_positions` equal positions: the real clips of a video (in order)
    tile its timeline evenly, and each position is the mean of the clips it overlaps, weighted by the overlap. With
    fewer clips than positions, neighbouring positions share a clip.

    Args:
        features (`[B, num_clips, C]`): clip features; padded clips are ignored.
        mask (`[B, num_clips]`, bool): True for real clips; every video has at least one.
        num_positions (`int`): `N`.

    Returns:
        `[B, N, C]` position features.
    """
    # float32 whatever the features' dtype: clip ranks beyond 256 are not exact in bfloat16
    mask = mask.float()
    num_real = mask.sum(dim=1, keepdim=True)
    rank = mask.cumsum(dim=1) - 1
    clip_start, clip_end = rank / num_real, (rank + 1) / num_real
    edges = torch.arange(num_positions + 1, device=features.device, dtype=torch.float32) / num_positions
    overlap = torch.minimum(clip_end[:, None, :], edges[None, 1:, None]) - torch.maximum(
        clip_start[:, None, :], edges[None, :-1, None]
    )
    weights = overlap.clamp(min=0) * mask[:, None, :]
    return (weights / weights.sum(dim=-1, keepdim=True)).to(features.dtype) @ features


def temporal_iou(moments: torch.Tensor, others: torch.Tensor, union: str = "hull") -> torch.Tensor:
    """
    Pairwise temporal IoU.

    The intersection is `min(ends) - max(starts)`, clipped at 0. The union has two formulas, equal in exact arithmetic
    whenever the moments overlap but rounded differently in floating point, which decides IoUs that sit exactly on a
    threshold (an IoU of 7/10 can come out as 0.7, 0.7000000000000001 or 0.6999999999999998). Each caller uses the
    one of the code it reproduces:

    - `"hull"`: `max(ends) - min(starts)`, as 2D-TAN's `iou` (its R@k, mIoU and training targets) and Moment-DETR's
      R1 (`compute_temporal_iou_batch_paired`).
    - `"sum"`: `length + other_length - intersection`, as 2D-TAN's `nms` and Moment-DETR's mAP
      (`compute_temporal_iou_batch_cross`).

    Args:
        moments (`[..., M, 2]`): `(start, end)` moments.
        others (`[..., K, 2]`): `(start, end)` moments, in the same unit.
        union (`str`, *optional*, defaults to `"hull"`): `"hull"` or `"sum"`, see above.

    Returns:
        `[..., M, K]` IoU of every moment with every other moment, in the dtype of the inputs; 0 where the union is
        empty.
    """
    starts, ends = moments[..., :, None, 0], moments[..., :, None, 1]
    other_starts, other_ends = others[..., None, :, 0], others[..., None, :, 1]
    intersection = (torch.minimum(ends, other_ends) - torch.maximum(starts, other_starts)).clamp(min=0)
    if union == "hull":
        union_length = torch.maximum(ends, other_ends) - torch.minimum(starts, other_starts)
    elif union == "sum":
        union_length = (ends - starts).clamp(min=0) + (other_ends - other_starts).clamp(min=0) - intersection
    else:
        raise ValueError(f"`union` must be one of {IOU_UNIONS}, got {union!r}.")
    safe_union = union_length.clamp(min=torch.finfo(union_length.dtype).tiny)
    return torch.where(union_length > 0, intersection / safe_union, 0.0)


__all__ = [
    "IOU_UNIONS",
    "candidate_diagonals",
    "candidate_moment_times",
    "default_pooling_counts",
    "pool_clips_to_positions",
    "pooling_counts_reach",
    "temporal_iou",
]
