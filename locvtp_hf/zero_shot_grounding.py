"""Zero-shot temporal grounding: moments from clip-sentence similarities alone, with no trained head.

A query's similarity to each clip of its video, `s_t = <v_t, s>`, is centred on its mean over the video's clips, and
the score of the moment from clip `i` to clip `j` is the sum of the centred similarities inside it:
`score(i, j) = sum_{i <= t <= j} (s_t - mean_u s_u)`. The best moment is the stretch of clips that match the query
better than the video does on average (a maximum-sum segment), so it has no parameter to fit: it measures what the
features know about *where*, and it grounds queries with a model that has no grounding head (any LocVTP or CLIP-started
model). The whole video scores 0, a moment of only below-average clips scores below 0.
"""

import torch

from .grounding_postprocessing import temporal_nms


def zero_shot_moment_scores(similarity: torch.Tensor, clip_mask: torch.Tensor | None = None) -> torch.Tensor:
    """
    Scores of every moment `(i, j)`, `i <= j`, of each query's clips.

    Args:
        similarity (`torch.Tensor` of shape `[Q, T]`): each query's similarity to the `T` clips of its video.
        clip_mask (`torch.Tensor` of shape `[Q, T]`, *optional*): 1 for real clips, 0 for padding at the end.

    Returns:
        `torch.Tensor` of shape `[Q, T, T]` (float64): `score[q, i, j]`; `-inf` where `i > j` or the moment reaches a
        padded clip.
    """
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be [queries, clips], got shape {tuple(similarity.shape)}.")
    similarity = similarity.detach().to(torch.float64)
    mask = torch.ones_like(similarity, dtype=torch.bool) if clip_mask is None else clip_mask.bool()
    if mask.shape != similarity.shape:
        raise ValueError(
            f"clip_mask must have the shape of similarity {tuple(similarity.shape)}, got {tuple(mask.shape)}."
        )
    if not mask.any(-1).all():
        raise ValueError("clip_mask marks no clip of some query's video as real: each video needs one.")
    mean = (similarity * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
    centred = (similarity - mean) * mask
    cumulative = torch.nn.functional.pad(centred.cumsum(-1), (1, 0))  # [Q, T + 1]
    scores = cumulative[:, None, 1:] - cumulative[:, :-1, None]  # [Q, i, j] = sum of clips i..j
    num_clips = similarity.shape[-1]
    upper = torch.ones(num_clips, num_clips, dtype=torch.bool, device=similarity.device).triu()
    valid = upper[None] & mask[:, None, :] & mask[:, :, None]
    return scores.masked_fill(~valid, float("-inf"))


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


def zero_shot_grounding(
    text_embeds: torch.Tensor,
    clip_embeds: torch.Tensor,
    clip_spans: torch.Tensor,
    clip_mask: torch.Tensor | None = None,
    video_durations: torch.Tensor | None = None,
    top_k: int = 5,
    nms_threshold: float | None = 0.5,
) -> list[list[dict[str, float]]]:
    """
    Ranked moments of each query from its similarity to its video's clips (see the module doc), in seconds.

    Args:
        text_embeds (`[Q, D]`): L2-normalised sentence embeddings (`LocVTPModel.get_text_features`).
        clip_embeds (`[Q, T, D]`): L2-normalised clip embeddings of each query's video, e.g. the whole video cut
            into `T` clips by `LocVTPProcessor(..., task="grounding")` or `num_clips` equal segments.
        clip_spans (`[Q, T, 2]`): each clip's `(start, end)` in seconds.
        clip_mask (`[Q, T]`, *optional*): 1 for real clips, 0 for padding at the end.
        video_durations (`[Q]`, *optional*): durations in seconds; moments then end at most there.
        top_k (`int`, *optional*, defaults to 5): moments per query.
        nms_threshold (`float`, *optional*, defaults to 0.5): 1-D NMS threshold; `None` turns it off.

    Returns:
        `list[list[dict]]`: per query, up to `top_k` dicts `{"start", "end", "score"}`, best first; the score is the
        sum of centred similarities (0 for the whole video).
    """
    if text_embeds.dim() != 2 or clip_embeds.dim() != 3 or clip_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"Need text_embeds [Q, D] and clip_embeds [Q, T, D] for the same Q queries, got {tuple(text_embeds.shape)}"
            f" and {tuple(clip_embeds.shape)}."
        )
    if clip_spans.shape != (*clip_embeds.shape[:2], 2):
        raise ValueError(f"clip_spans must be {(*clip_embeds.shape[:2], 2)}, got {tuple(clip_spans.shape)}.")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
    similarity = torch.einsum("qd,qtd->qt", text_embeds.float(), clip_embeds.float())
    scores = zero_shot_moment_scores(similarity, clip_mask)
    boundaries = clip_boundaries(clip_spans, video_durations, clip_mask)
    num_clips = clip_embeds.shape[1]
    start_index, end_index = torch.triu_indices(num_clips, num_clips)
    results = []
    for query_scores, query_boundaries in zip(scores, boundaries):
        candidate_scores = query_scores[start_index, end_index]
        real = torch.isfinite(candidate_scores)
        moments = torch.stack([query_boundaries[start_index], query_boundaries[end_index + 1]], dim=-1)[real]
        candidate_scores = candidate_scores[real]
        kept = temporal_nms(moments, candidate_scores, iou_threshold=nms_threshold, top_k=top_k)
        results.append(
            [
                {"start": start, "end": end, "score": score}
                for (start, end), score in zip(moments[kept].tolist(), candidate_scores[kept].tolist())
            ]
        )
    return results


__all__ = ["clip_boundaries", "zero_shot_grounding", "zero_shot_moment_scores"]
