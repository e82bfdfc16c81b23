"""Post-processing of temporal grounding: scored candidate moments to ranked moments in seconds, with 1-D NMS."""

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


def grounding_moments(
    outputs,
    top_k: int = 5,
    nms_threshold: float | None = 0.5,
    video_durations: torch.Tensor | None = None,
) -> list[list[dict[str, float]]]:
    """
    The best moments of each query of a [`LocVTPForTemporalGrounding`] output, in seconds.

    Args:
        outputs ([`LocVTPTemporalGroundingOutput`]): the model's output (its `scores`, `moment_mask` and, unless
            `video_durations` is given, `video_durations`).
        top_k (`int`, *optional*, defaults to 5): moments per query.
        nms_threshold (`float`, *optional*, defaults to 0.5): 1-D NMS threshold, see [`temporal_nms`]; `None` turns
            NMS off.
        video_durations (`torch.Tensor` of shape `[B]`, *optional*): durations in seconds; needed when the model
            was given none (precomputed features without `video_durations`), else they override the output's.

    Returns:
        `list[list[dict]]`: per query, up to `top_k` dicts `{"start", "end", "score"}` (seconds, and the predicted
        scaled IoU in `[0, 1]`), best first.
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    if nms_threshold is not None and not 0 <= nms_threshold <= 1:
        raise ValueError(f"nms_threshold must be in [0, 1] or None, got {nms_threshold!r}.")
    scores, moment_mask = outputs.scores, outputs.moment_mask
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
    return results


__all__ = ["grounding_moments", "temporal_nms"]
