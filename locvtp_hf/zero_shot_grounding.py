"""Zero-shot temporal grounding: moments from clip-sentence similarities alone, with no trained head.

A query's similarity to each clip of its video, `s_t = <v_t, s>`, is centred on its mean over the video's clips, and
the score of the moment from clip `i` to clip `j` is the sum of the centred similarities inside it:
`score(i, j) = sum_{i <= t <= j} (s_t - mean_u s_u)`. The best moment is the stretch of clips that match the query
better than the video does on average (a maximum-sum segment), so it has no parameter to fit: it measures what the
features know about *where*, and it grounds queries with a model that has no grounding head (any LocVTP or CLIP-started
model). The whole video scores 0, a moment of only below-average clips scores below 0.

The zero-shot saliency of a clip (highlight detection without a saliency head) is its similarity to the query itself,
the cosine `<v_t, s> / (|v_t| |s|)`.
"""

import torch
import torch.nn.functional as F

from .grounding_postprocessing import clip_boundaries, clip_saliency, temporal_nms


def zero_shot_saliency(
    clip_features: torch.Tensor, text_embeds: torch.Tensor, clip_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """
    Per-clip saliency of each query from any LocVTP model: the cosine similarity of each clip feature with the query.

    Args:
        clip_features (`torch.Tensor` of shape `[B, C, D]`): the clip features of each query's video (e.g.
            `get_clip_features`, or a grounding output's `video_features`).
        text_embeds (`torch.Tensor` of shape `[B, D]`): the sentence embeddings (`get_text_features(...).pooler_output`,
            or a grounding output's `text_embeds`).
        clip_mask (`torch.Tensor` of shape `[B, C]`, *optional*): 1 for real clips, 0 for padding.

    Returns:
        `torch.Tensor` of shape `[B, C]`: cosines in `[-1, 1]`, `-inf` at padded clips (below every real clip, as the
        model's `saliency_logits`; take the real clips with the mask before averaging).
    """
    if clip_features.dim() != 3 or text_embeds.dim() != 2 or clip_features.shape[::2] != text_embeds.shape:
        raise ValueError(
            f"Need clip_features [B, C, D] and text_embeds [B, D] for the same B queries, got "
            f"{tuple(clip_features.shape)} and {tuple(text_embeds.shape)}."
        )
    clip_features, text_embeds = F.normalize(clip_features.float(), dim=-1), F.normalize(text_embeds.float(), dim=-1)
    cosine = torch.einsum("bcd,bd->bc", clip_features, text_embeds)
    if clip_mask is None:
        return cosine
    if clip_mask.shape != cosine.shape:
        raise ValueError(f"clip_mask must have shape {tuple(cosine.shape)}, got {tuple(clip_mask.shape)}.")
    return cosine.masked_fill(~clip_mask.bool(), float("-inf"))


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


def zero_shot_grounding(
    text_embeds: torch.Tensor,
    clip_embeds: torch.Tensor,
    clip_spans: torch.Tensor,
    clip_mask: torch.Tensor | None = None,
    video_durations: torch.Tensor | None = None,
    top_k: int = 5,
    nms_threshold: float | None = 0.5,
    return_saliency: bool = False,
) -> list:
    """
    Ranked moments of each query from its similarity to its video's clips (see the module doc), in seconds, and on
    request the zero-shot saliency of each clip.

    Args:
        text_embeds (`[Q, D]`): L2-normalised sentence embeddings (`LocVTPModel.get_text_features`).
        clip_embeds (`[Q, T, D]`): L2-normalised clip embeddings of each query's video, e.g. the whole video cut
            into `T` clips by `LocVTPProcessor(..., task="grounding")` or `num_clips` equal segments.
        clip_spans (`[Q, T, 2]`): each clip's `(start, end)` in seconds.
        clip_mask (`[Q, T]`, *optional*): 1 for real clips, 0 for padding at the end.
        video_durations (`[Q]`, *optional*): durations in seconds; moments then end at most there.
        top_k (`int`, *optional*, defaults to 5): moments per query.
        nms_threshold (`float`, *optional*, defaults to 0.5): 1-D NMS threshold; `None` turns it off.
        return_saliency (`bool`, *optional*, defaults to `False`): also return each clip's [`zero_shot_saliency`].

    Returns:
        `list[list[dict]]`: per query, up to `top_k` dicts `{"start", "end", "score"}`, best first; the score is the
        sum of centred similarities (0 for the whole video). With `return_saliency`, per query a dict `{"moments":
        that list, "saliency": {"times": [[start, end], ...], "scores": [...]}}`, one entry per real clip, the times
        being its [`~locvtp_hf.grounding_postprocessing.clip_boundaries`], as
        [`~locvtp_hf.grounding_postprocessing.grounding_moments`] returns them.
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
    if not return_saliency:
        return results
    mask = None if clip_mask is None else clip_mask.bool()
    saliency = clip_saliency(zero_shot_saliency(clip_embeds, text_embeds, mask), mask, video_durations, clip_spans)
    return [{"moments": moments, "saliency": clip} for moments, clip in zip(results, saliency)]


__all__ = ["zero_shot_grounding", "zero_shot_moment_scores", "zero_shot_saliency"]
