"""Post-processing of temporal grounding: scored candidate moments to ranked moments in seconds, with 1-D NMS, and
per-clip saliency scores to scores with their times."""

import torch

from .moment_geometry import candidate_moment_times, temporal_iou


def temporal_nms(
    moments: torch.Tensor, scores: torch.Tensor, iou_threshold: float | None = 0.5, top_k: int | None = None
) -> torch.Tensor:
    """
    Greedy 1-D non-maximum suppression: repeatedly keep the best remaining moment and drop the moments whose IoU with
    it is above `iou_threshold`.

    The IoUs are computed as 2D-TAN's `nms` does: in float64 whatever the dtype of `moments` (float32 rounding would
    put overlaps of exactly `iou_threshold`, common on a grid of candidate moments, on either side of it), with the
    `"sum"` union of [`~moment_geometry.temporal_iou`].

    Args:
        moments (`torch.Tensor` of shape `[M, 2]`): `(start, end)` of each moment.
        scores (`torch.Tensor` of shape `[M]`): higher is better.
        iou_threshold (`float`, *optional*, defaults to 0.5): IoU above which a lower-scored moment is dropped (as
            2D-TAN: `>`); `None` keeps every moment (only sorts).
        top_k (`int`, *optional*): stop after keeping this many.

    Returns:
        `torch.LongTensor` of shape `[K]`: indices of the kept moments, best first (ties keep the input order).

    Example:

    ```python
    >>> import torch
    >>> from locvtp_hf.grounding_postprocessing import temporal_nms
    >>> moments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    >>> temporal_nms(moments, torch.tensor([0.9, 0.8, 0.5]), iou_threshold=0.5).tolist()
    [0, 2]
    ```
    """
    order = scores.argsort(descending=True, stable=True)
    if iou_threshold is None:
        return order[:top_k]
    moments = moments.to(torch.float64)
    kept, remaining = [], order
    while len(remaining) and (top_k is None or len(kept) < top_k):
        best, remaining = remaining[0], remaining[1:]
        kept.append(best)
        overlaps = temporal_iou(moments[best][None], moments[remaining], union="sum")[0]
        remaining = remaining[overlaps <= iou_threshold]
    return torch.stack(kept) if kept else order[:0]


def clip_boundaries(
    clip_spans: torch.Tensor, video_durations: torch.Tensor | None = None, clip_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """
    Where the stretch of video each clip stands for begins and ends: halfway between the centres of consecutive clips,
    from 0 to the video's duration (or the last real clip's end). For clips centred in equal segments these are the
    segments' edges.

    Args:
        clip_spans (`[Q, T, 2]`): each clip's `(start, end)` in seconds, as the processor returns them.
        video_durations (`[Q]`, *optional*): each video's duration in seconds.
        clip_mask (`[Q, T]`, *optional*): 1 for real clips, 0 for padding at the end.

    Returns:
        `[Q, T + 1]` seconds (float64): clip `t` stands for `[boundaries[t], boundaries[t + 1]]`; for a video of
        `n < T` real clips, `boundaries[n]` is its end.
    """
    centres = clip_spans.to(torch.float64).mean(-1)
    rows = torch.arange(clip_spans.shape[0], device=clip_spans.device)
    lengths = torch.full_like(rows, clip_spans.shape[1]) if clip_mask is None else clip_mask.bool().sum(-1)
    if video_durations is None:
        ends = clip_spans[rows, (lengths - 1).clamp(min=0), 1].to(torch.float64)
    else:
        ends = torch.as_tensor(video_durations, dtype=torch.float64, device=centres.device).reshape(-1)
    middle = (centres[:, 1:] + centres[:, :-1]) / 2
    boundaries = torch.cat([torch.zeros_like(ends)[:, None], middle, ends[:, None]], dim=1)
    boundaries[rows, lengths] = ends
    return boundaries


def clip_times(
    clip_mask: torch.Tensor,
    video_durations: torch.Tensor | None = None,
    clip_spans: torch.Tensor | None = None,
) -> list[list[list[float]]]:
    """
    The stretch of video each real clip stands for, in seconds, per video.

    Args:
        clip_mask (`[Q, T]`): 1 for real clips, 0 for padding at the end.
        video_durations (`[Q]`, *optional*): durations in seconds; needed without `clip_spans`.
        clip_spans (`[Q, T, 2]`, *optional*): each clip's `(start, end)` in seconds, as the processor returns them.
            The times are then the [`clip_boundaries`]; without them each video's real clips cut its duration
            evenly (as precomputed `video_features` tile their video).

    Returns:
        `list[list[list[float]]]`: per video, `[start, end]` of each real clip, in order.
    """
    mask = clip_mask.bool()
    lengths = mask.sum(-1)
    if clip_spans is not None:
        boundaries = clip_boundaries(clip_spans, video_durations, mask)
    elif video_durations is None:
        raise ValueError("The clips have no times: give the clip_spans or the video_durations (seconds) of the videos.")
    else:
        durations = torch.as_tensor(video_durations, dtype=torch.float64, device=mask.device).reshape(-1, 1)
        steps = torch.arange(mask.shape[1] + 1, device=mask.device, dtype=torch.float64)
        boundaries = durations * steps / lengths[:, None].clamp(min=1)
    times = []
    for video_boundaries, length in zip(boundaries, lengths.tolist()):
        ends = video_boundaries[: length + 1].tolist()
        times.append([list(pair) for pair in zip(ends[:-1], ends[1:])])
    return times


def clip_saliency(
    scores: torch.Tensor,
    clip_mask: torch.Tensor | None = None,
    video_durations: torch.Tensor | None = None,
    clip_spans: torch.Tensor | None = None,
) -> list[dict[str, list]]:
    """
    Each query's per-clip saliency with the stretch of video each clip stands for, in seconds ([`clip_times`]).

    Args:
        scores (`[Q, T]`): a saliency score per clip of each query's video.
        clip_mask (`[Q, T]`, *optional*): 1 for real clips, 0 for padding at the end.
        video_durations (`[Q]`, *optional*), clip_spans (`[Q, T, 2]`, *optional*): see [`clip_times`].

    Returns:
        `list[dict]`: per query, `{"times": [[start, end], ...], "scores": [...]}`, one entry per real clip, in order.
    """
    if scores.dim() != 2:
        raise ValueError(f"saliency scores must be [queries, clips], got shape {tuple(scores.shape)}.")
    mask = torch.ones_like(scores, dtype=torch.bool) if clip_mask is None else clip_mask.bool()
    times = clip_times(mask, video_durations, clip_spans)
    return [
        {"times": query_times, "scores": query_scores[: len(query_times)].tolist()}
        for query_times, query_scores in zip(times, scores.float())
    ]


def grounding_moments(
    outputs,
    top_k: int = 5,
    nms_threshold: float | None = 0.5,
    video_durations: torch.Tensor | None = None,
    return_saliency: bool = False,
) -> list:
    """
    The best moments of each query of a [`LocVTPForTemporalGrounding`] output, in seconds, and on request its
    per-clip saliency.

    Args:
        outputs ([`LocVTPTemporalGroundingOutput`]): the model's output (its `scores`, `moment_mask` and, unless
            `video_durations` is given, `video_durations`).
        top_k (`int`, *optional*, defaults to 5): moments per query.
        nms_threshold (`float`, *optional*, defaults to 0.5): 1-D NMS threshold, see [`temporal_nms`]; `None` turns
            NMS off.
        video_durations (`torch.Tensor` of shape `[B]`, *optional*): durations in seconds; needed when the model
            was given none (precomputed features without `video_durations`), else they override the output's.
        return_saliency (`bool`, *optional*, defaults to `False`): also return each clip's saliency score (the
            output's `saliency_scores`: the model needs `config.grounding_saliency_head`), see [`clip_saliency`].

    Returns:
        `list[list[dict]]`: per query, up to `top_k` dicts `{"start", "end", "score"}` (seconds, and the predicted
        scaled IoU in `[0, 1]`), best first. With `return_saliency`, per query a dict `{"moments": that list,
        "saliency": {"times": [[start, end], ...], "scores": [...]}}` with one time span (seconds) and one score in
        `[0, 1]` per real clip.
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    if nms_threshold is not None and not 0 <= nms_threshold <= 1:
        raise ValueError(f"nms_threshold must be in [0, 1] or None, got {nms_threshold!r}.")
    scores, moment_mask = outputs.scores, outputs.moment_mask
    saliency_scores = getattr(outputs, "saliency_scores", None)
    if return_saliency and saliency_scores is None:
        raise ValueError(
            "return_saliency=True but the outputs carry no saliency_scores: the model has no saliency head (set "
            "grounding_saliency_head=True and train it); for zero-shot saliency use "
            "locvtp_hf.zero_shot_grounding.zero_shot_saliency(outputs.video_features, outputs.text_embeds, "
            "outputs.video_mask)."
        )
    if video_durations is None:
        video_durations = getattr(outputs, "video_durations", None)
    if video_durations is None:
        raise ValueError(
            "The model was given no video_durations, so its moments have no time unit: pass "
            "video_durations=[seconds, ...] to post_process_grounding."
        )
    video_durations = torch.as_tensor(video_durations, dtype=torch.float32, device=scores.device)
    if video_durations.shape != scores.shape[:1]:
        raise ValueError(
            f"video_durations must hold one duration per query ({scores.shape[0]}), got shape "
            f"{tuple(video_durations.shape)}."
        )
    candidate_moments = candidate_moment_times(scores.shape[-1], video_durations)[:, moment_mask]
    scores = scores[:, moment_mask].float()
    results = []
    for moments, query_scores in zip(candidate_moments, scores):
        kept = temporal_nms(moments, query_scores, iou_threshold=nms_threshold, top_k=top_k)
        results.append(
            [
                {"start": start, "end": end, "score": score}
                for (start, end), score in zip(moments[kept].tolist(), query_scores[kept].tolist())
            ]
        )
    if not return_saliency:
        return results
    saliency = clip_saliency(
        saliency_scores, outputs.video_mask, video_durations, getattr(outputs, "clip_spans", None)
    )
    return [{"moments": moments, "saliency": clip} for moments, clip in zip(results, saliency)]


__all__ = ["clip_boundaries", "clip_saliency", "clip_times", "grounding_moments", "temporal_nms"]
