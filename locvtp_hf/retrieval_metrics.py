"""Text-video retrieval metrics as plain functions: ranks, R@k, median and mean rank in both directions, and the
optional DSL / inverted-softmax re-normalisations of a similarity matrix.

Conventions (see docs/retrieval.md):

- A similarity matrix is `[num_queries, num_candidates]`, higher is better.
- **Rank** of a query: 1 + the number of *wrong* candidates that score at least as high as its best correct
  candidate. So a query with several correct candidates (a video with several captions) counts as found at `k` when
  any of them is in the top `k`, and a wrong candidate *tied* with the best correct one ranks before it. This tie
  rule is deterministic (it does not depend on the order of the candidates) and pessimistic: a model that gives
  every candidate the same score gets the worst rank, never the best. CLIP4Clip's `compute_metrics` (and code
  derived from it) counts a tied query once per tied position instead, so it has more ranks than queries and R@k,
  median and mean rank differ from these whenever scores tie, which is frequent with fp16 or quantised similarities.
- **R@k**: the fraction of queries with rank <= k (0 to 1, not percent). **Median rank**: `numpy.median` of the ranks
  (the mean of the two middle ranks for an even number of queries). **Mean rank**: their mean.
"""

from collections.abc import Sequence

import numpy as np
import torch


RENORMALIZATIONS = ("dsl", "inverted_softmax")


def retrieval_ranks(similarity: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """
    The rank of every query under the module's tie rule.

    Args:
        similarity (`[Q, N]`): score of every candidate for every query.
        relevance (`[Q, N]`, bool): True where a candidate is a correct answer of the query; every query needs one.

    Returns:
        `[Q]` long tensor of 1-based ranks.
    """
    if similarity.dim() != 2 or similarity.shape != relevance.shape:
        raise ValueError(
            f"similarity and relevance must both be [queries, candidates], got {tuple(similarity.shape)} and "
            f"{tuple(relevance.shape)}."
        )
    if not torch.isfinite(similarity).all():
        rows = (~torch.isfinite(similarity)).any(1).nonzero().flatten().tolist()
        raise ValueError(f"similarity has NaN or infinite scores in query rows {rows[:10]}: ranks are undefined.")
    relevance = relevance.bool()
    missing = (~relevance.any(1)).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"Queries {missing[:10]} have no correct candidate: every query needs at least one.")
    best_correct = similarity.masked_fill(~relevance, float("-inf")).amax(1, keepdim=True)
    return 1 + ((similarity >= best_correct) & ~relevance).sum(1)


def rank_metrics(ranks: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """`R@k` for each `k`, `median_rank` and `mean_rank` of `ranks` (`[Q]`, 1-based)."""
    if ranks.numel() == 0:
        raise ValueError("No queries to compute retrieval metrics over.")
    ranks = ranks.double()
    metrics = {f"R@{k}": (ranks <= k).double().mean().item() for k in ks}
    metrics["median_rank"] = float(np.median(ranks.numpy()))
    metrics["mean_rank"] = ranks.mean().item()
    return metrics


def dual_softmax(similarity: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """
    DSL inference re-normalisation (Cheng et al. 2021, "Improving video-text retrieval by multi-stream corpus
    alignment and dual softmax loss"): each score times the softmax of the candidate's scores over all queries,
    `S[q, n] * softmax_q(S[:, n] / temperature)`. It uses the whole query set as a prior (transductive).

    Args:
        similarity (`[Q, N]`), temperature: of the softmax over the query axis.

    Returns:
        `[Q, N]` float64 scores.
    """
    similarity = similarity.double()
    return similarity * torch.softmax(similarity / temperature, dim=0)


def inverted_softmax(similarity: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """
    Inverted softmax (Smith et al. 2017; the normalisation of QB-Norm, Bogolin et al. 2022): each candidate's scores
    are normalised over all queries, `softmax_q(S[:, n] / temperature)`, which lowers "hub" candidates that score high
    for every query. Returned as log-probabilities (same order, no underflow into ties). Transductive, like DSL.

    Returns:
        `[Q, N]` float64 scores.
    """
    return torch.log_softmax(similarity.double() / temperature, dim=0)


def text_video_retrieval_metrics(
    similarity: torch.Tensor,
    text_to_video: torch.Tensor | Sequence[int],
    ks: Sequence[int] = (1, 5, 10),
    renormalization: str | None = None,
    temperature: float = 0.01,
) -> dict[str, float]:
    """
    Text-to-video and video-to-text retrieval metrics of one similarity matrix.

    Text-to-video: each text retrieves among all videos; its video is the correct one. Video-to-text: each video
    that has at least one text retrieves among all texts; all of its texts are correct (the rank of its best-placed
    text counts). Videos without a text take part as distractors in text-to-video only.

    Args:
        similarity (`[num_texts, num_videos]`): text-video scores.
        text_to_video (`[num_texts]`): the index of each text's video (column of `similarity`).
        ks: the `k` of the `R@k`.
        renormalization (`str`, *optional*): also report the metrics after `"dsl"` ([`dual_softmax`]) or
            `"inverted_softmax"` re-normalisation, under keys prefixed with its name, beside the plain ones. The
            softmax runs over the queries of each direction: all texts, or all videos that have a text.
        temperature: the temperature of the re-normalisation.

    Returns:
        `text_to_video_R@k`, `text_to_video_median_rank`, `text_to_video_mean_rank`, the same for `video_to_text`,
        `num_texts`, `num_videos`, and with `renormalization` the re-normalised metrics, e.g. `dsl_text_to_video_R@1`.
    """
    similarity = torch.as_tensor(similarity)
    text_to_video = torch.as_tensor(text_to_video, dtype=torch.long)
    if similarity.dim() != 2:
        raise ValueError(f"similarity must be [num_texts, num_videos], got shape {tuple(similarity.shape)}.")
    num_texts, num_videos = similarity.shape
    if text_to_video.shape != (num_texts,):
        raise ValueError(
            f"text_to_video must give one video index per text ({num_texts}), got shape {tuple(text_to_video.shape)}."
        )
    outside = ((text_to_video < 0) | (text_to_video >= num_videos)).nonzero().flatten().tolist()
    if outside:
        raise ValueError(f"Texts {outside[:10]} point to videos outside 0..{num_videos - 1}.")
    if renormalization is not None and renormalization not in RENORMALIZATIONS:
        raise ValueError(f"renormalization must be one of {RENORMALIZATIONS} or None, got {renormalization!r}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")

    relevance = text_to_video[:, None] == torch.arange(num_videos)[None, :]  # [num_texts, num_videos]
    videos_with_text = relevance.any(0)
    directions = {
        "text_to_video": (similarity, relevance),
        "video_to_text": (similarity.T[videos_with_text], relevance.T[videos_with_text]),
    }
    metrics = {}
    for direction, (scores, correct) in directions.items():
        for name, value in rank_metrics(retrieval_ranks(scores, correct), ks).items():
            metrics[f"{direction}_{name}"] = value
    if renormalization is not None:
        normalize = dual_softmax if renormalization == "dsl" else inverted_softmax
        for direction, (scores, correct) in directions.items():
            ranks = retrieval_ranks(normalize(scores, temperature), correct)
            for name, value in rank_metrics(ranks, ks).items():
                metrics[f"{renormalization}_{direction}_{name}"] = value
    metrics["num_texts"], metrics["num_videos"] = num_texts, num_videos
    return metrics


__all__ = [
    "RENORMALIZATIONS",
    "dual_softmax",
    "inverted_softmax",
    "rank_metrics",
    "retrieval_ranks",
    "text_video_retrieval_metrics",
]
