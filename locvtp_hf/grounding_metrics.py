"""
Temporal grounding metrics as plain functions: IoU of moments, recall at IoU thresholds, mIoU, and the
QVHighlights-style mean average precision of multi-window queries.

Conventions shared by every function here:

- A query's **prediction** is a ranked list of moments, best first: rows `[start, end]`, rows
  `[start, end, score]`, or dicts `{"start", "end", "score"}` as `post_process_grounding` returns them. When scores
  are given the moments are re-ranked by score (descending, stable); otherwise the given order is the ranking.
- A query's **reference** is one `[start, end]` moment or a list of them (several QVHighlights windows, several
  DiDeMo annotators). A prediction's IoU with a multi-moment reference is its best IoU over the reference moments.
- `iou_comparison` decides ties at a threshold: `">="` (Moment-DETR, QVHighlights and most work since) counts
  IoU == threshold as a hit; `">"` (2D-TAN's evaluation code) does not. IoUs are compared as computed in float64,
  without tolerance, like the reference implementations, and with the same union formula as they use (see
  [`temporal_iou`]): R@k and mIoU divide by the hull `max(ends) - min(starts)` (2D-TAN's evaluation, Moment-DETR's
  R1), mAP by `length + other_length - intersection` (Moment-DETR's mAP).
- Results are fractions in `[0, 1]` (papers print them multiplied by 100), except those of
  [`moment_detr_metrics`], which reproduces Moment-DETR's output: percentages under its key names.

QVHighlights also has highlight detection: per query a saliency score for each 2-second clip of the video, judged
against the 0-4 scores of 3 annotators ([`highlight_metrics`]).
"""

import math
from collections.abc import Mapping, Sequence

import torch

from .moment_geometry import temporal_iou


IOU_COMPARISONS = (">=", ">")
# R@{1,5} at IoU {0.3, 0.5, 0.7}: the Charades-STA / ActivityNet Captions / TACoS tables (2D-TAN and LocVTP).
RECALL_AT = (1, 5)
RECALL_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
# 0.5:0.05:0.95, rounded so that keys read "mAP@0.55" and not "mAP@0.5500000000000002" (as Moment-DETR does).
MAP_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))
# Moment-DETR's evaluation keeps the 10 best windows of each query for mAP.
MAP_MAX_PREDICTIONS = 10
# Moment-DETR's QVHighlights subsets by the length of the ground-truth windows in seconds, each range `(low, high]`.
QVHIGHLIGHTS_LENGTH_RANGES = {"short": (0.0, 10.0), "middle": (10.0, 30.0), "long": (30.0, 150.0)}
# Moment-DETR's highlight levels: a clip is relevant for an annotator who scored it at least this (scores are 0-4).
HIGHLIGHT_SALIENCY_THRESHOLDS = {"Fair": 2, "Good": 3, "VeryGood": 4}
HIGHLIGHT_MAX_SCORE = 4
QVHIGHLIGHTS_CLIP_SECONDS = 2.0


def as_ranked_moments(prediction, where: str = "prediction") -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    One query's predicted moments as a float64 tensor, best first.

    Args:
        prediction: rows `[start, end]` or `[start, end, score]`, or dicts with `"start"`, `"end"` and optionally
            `"score"`; may be empty.
        where (`str`): how to name the prediction in error messages, e.g. `"predictions[3]"`.

    Returns:
        `tuple[torch.Tensor, torch.Tensor | None]`: moments `[P, 2]` in seconds, ranked (by descending score, stable,
        when scores are given, else in the given order), and their scores `[P]` in that order, or `None`.

    Raises:
        `ValueError`: rows of another width, mixed rows with and without scores, non-finite values, or `end < start`.
    """
    rows = [_row_of(item, f"{where}[{index}]") for index, item in enumerate(prediction)]
    if not rows:
        return torch.zeros(0, 2, dtype=torch.float64), None
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"{where} mixes moments with and without a score; give every moment a score or none.")
    values = torch.tensor(rows, dtype=torch.float64)
    _check_moments(values[:, :2], where)
    if values.shape[1] == 2:
        return values, None
    if not torch.isfinite(values[:, 2]).all():
        raise ValueError(f"{where} has a non-finite score: {values[:, 2].tolist()}.")
    order = torch.sort(values[:, 2], descending=True, stable=True).indices
    return values[order, :2], values[order, 2]


def as_reference_moments(reference, where: str = "reference") -> torch.Tensor:
    """
    One query's ground-truth moments as a float64 tensor `[G, 2]` (`G >= 1`).

    Args:
        reference: one moment `[start, end]` or a non-empty list of them (a `[G, 2]` tensor or array works too).
        where (`str`): how to name the reference in error messages, e.g. `"references[3]"`.

    Raises:
        `ValueError`: no moment, a moment that is not a `[start, end]` pair, non-finite values, or `end < start`.
    """
    try:
        values = torch.as_tensor(_plain(reference), dtype=torch.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where} must be one [start, end] moment or a list of them, got {reference!r}.") from error
    if values.numel() == 0:
        raise ValueError(f"{where} has no ground-truth moment; every query needs at least one.")
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] != 2:
        raise ValueError(
            f"{where} must be one [start, end] moment or a list of them, got a value of shape {tuple(values.shape)}."
        )
    _check_moments(values, where)
    return values


def passes_iou_threshold(iou: torch.Tensor, threshold: float, iou_comparison: str = ">=") -> torch.Tensor:
    """
    Boolean tensor of the IoUs that count as a hit at `threshold` under `iou_comparison` (`">="` or `">"`).
    """
    if iou_comparison == ">=":
        return iou >= threshold
    if iou_comparison == ">":
        return iou > threshold
    raise ValueError(f"`iou_comparison` must be one of {IOU_COMPARISONS}, got {iou_comparison!r}.")


def best_ious(predictions: Sequence, references: Sequence) -> list[torch.Tensor]:
    """
    For every query, the IoU of each predicted moment with its best-matching ground-truth moment.

    Args:
        predictions (`Sequence`): `N` predictions (see the module docstring for the accepted forms).
        references (`Sequence`): `N` references.

    Returns:
        `list[torch.Tensor]`: `N` float64 tensors `[P_i]`, in ranked order (hull IoUs, see [`temporal_iou`]).
    """
    return [iou.amax(dim=1) for iou in _iou_matrices(predictions, references, union="hull")]


def recall_at_k(
    predictions: Sequence,
    references: Sequence,
    recall_at: Sequence[int] = RECALL_AT,
    iou_thresholds: Sequence[float] = RECALL_IOU_THRESHOLDS,
    iou_comparison: str = ">=",
) -> dict[str, float]:
    """
    R@k at IoU t: the fraction of queries for which at least one of the `k` best predicted moments reaches IoU `t`
    with a ground-truth moment (its best one when there are several). A query with fewer than `k` predictions is
    judged on those it has; one with none is a miss.

    QVHighlights' R1@0.5 and R1@0.7 (Moment-DETR) are `R@1,IoU=0.5` and `R@1,IoU=0.7` with `iou_comparison=">="`.

    Returns:
        `dict[str, float]`: keys `"R@{k},IoU={t}"`, e.g. `"R@1,IoU=0.5"`.
    """
    if not recall_at or any(not isinstance(k, int) or k < 1 for k in recall_at):
        raise ValueError(f"`recall_at` must be positive integers (the k of R@k), got {list(recall_at)}.")
    _check_thresholds(iou_thresholds)
    query_best_ious = best_ious(predictions, references)
    results = {}
    for k in recall_at:
        for threshold in iou_thresholds:
            hits = [bool(passes_iou_threshold(ious[:k], threshold, iou_comparison).any()) for ious in query_best_ious]
            results[f"R@{k},IoU={threshold:g}"] = sum(hits) / len(hits)
    return results


def mean_iou(predictions: Sequence, references: Sequence) -> float:
    """
    mIoU: the mean over queries of the IoU of the top-1 predicted moment with its best-matching ground-truth moment
    (0 for a query without predictions). This is the mIoU that 2D-TAN's `eval` returns.
    """
    query_best_ious = best_ious(predictions, references)
    return sum(float(ious[0]) if len(ious) else 0.0 for ious in query_best_ious) / len(query_best_ious)


def average_precision(iou: torch.Tensor, threshold: float, iou_comparison: str = ">=") -> float:
    """
    Average precision of one query's ranked predictions at one IoU threshold, in the ActivityNet / Moment-DETR
    detection style.

    Predictions are taken best first; each is a true positive when it reaches the threshold with a ground-truth
    moment that no better prediction has claimed (it claims the unclaimed one of highest IoU; among equal IoUs the
    later ground-truth moment, as Moment-DETR's `argsort()[::-1]` does), else a false positive. AP is the area under
    the precision-recall curve after making precision non-increasing (all-points interpolation): the mean over the
    `G` ground-truth moments of the interpolated precision at the rank where each is found, 0 for those never found.

    Args:
        iou (`[P, G]`): IoU of each ranked prediction with each ground-truth moment.
        threshold (`float`): IoU threshold.
        iou_comparison (`str`): `">="` or `">"`.

    Returns:
        `float`: AP in `[0, 1]`; 0 when `P == 0`.
    """
    num_predictions, num_ground_truth = iou.shape
    if num_predictions == 0:
        return 0.0
    passes = passes_iou_threshold(iou, threshold, iou_comparison)
    # a stable ascending sort, reversed: among equal IoUs the later ground-truth moment is claimed first
    candidate_order = iou.argsort(dim=1, stable=True).flip(1).tolist()
    claimed = [False] * num_ground_truth
    true_positive = []
    for prediction_index, order in enumerate(candidate_order):
        match = next((g for g in order if passes[prediction_index, g] and not claimed[g]), None)
        if match is not None:
            claimed[match] = True
        true_positive.append(match is not None)
    hits = torch.tensor(true_positive, dtype=torch.float64)
    precision = hits.cumsum(0) / torch.arange(1, num_predictions + 1, dtype=torch.float64)
    # interpolated precision at rank r: the best precision at any rank >= r
    interpolated = precision.flip(0).cummax(0).values.flip(0)
    return float((interpolated * hits).sum() / num_ground_truth)


def mean_average_precision(
    predictions: Sequence,
    references: Sequence,
    iou_thresholds: Sequence[float] = MAP_IOU_THRESHOLDS,
    max_predictions: int | None = MAP_MAX_PREDICTIONS,
    iou_comparison: str = ">=",
) -> dict[str, float]:
    """
    QVHighlights-style moment retrieval mAP (Moment-DETR's evaluation): for each IoU threshold the mean over queries
    of the per-query [`average_precision`] of its `max_predictions` best moments against all of its ground-truth
    windows, and `"mAP"`, the mean of those over the thresholds (0.5:0.05:0.95 by default). IoUs use the `"sum"`
    union, as Moment-DETR's mAP does (see [`temporal_iou`]).

    Returns:
        `dict[str, float]`: `"mAP"` and `"mAP@{t}"` for every threshold, e.g. `"mAP@0.75"`.
    """
    _check_thresholds(iou_thresholds)
    if max_predictions is not None and max_predictions < 1:
        raise ValueError(f"`max_predictions` must be a positive number of moments or None, got {max_predictions}.")
    ious = _iou_matrices(predictions, references, union="sum")
    results = {}
    for threshold in iou_thresholds:
        per_query = [average_precision(iou[:max_predictions], threshold, iou_comparison) for iou in ious]
        results[f"mAP@{threshold:g}"] = sum(per_query) / len(per_query)
    return {"mAP": sum(results.values()) / len(results), **results}


def grounding_metrics(
    predictions: Sequence,
    references: Sequence,
    recall_at: Sequence[int] = RECALL_AT,
    iou_thresholds: Sequence[float] = RECALL_IOU_THRESHOLDS,
    iou_comparison: str = ">=",
    map_iou_thresholds: Sequence[float] | None = MAP_IOU_THRESHOLDS,
    map_max_predictions: int | None = MAP_MAX_PREDICTIONS,
    length_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """
    All grounding metrics in one dict: `"R@{k},IoU={t}"` ([`recall_at_k`]), `"mIoU"` ([`mean_iou`]) and, unless
    `map_iou_thresholds` is `None`, `"mAP"` and `"mAP@{t}"` ([`mean_average_precision`]); with `length_ranges`, the
    same again on each length subset ([`select_by_moment_length`]) as `"{subset}/{key}"`, e.g. `"short/mAP"` (NaN
    for a subset without queries).

    Args:
        predictions (`Sequence`): `N` ranked predictions, one per query (see the module docstring).
        references (`Sequence`): `N` references: a `[start, end]` moment or a list of them per query.
        recall_at (`Sequence[int]`): the `k` of R@k.
        iou_thresholds (`Sequence[float]`): the IoU thresholds of R@k.
        iou_comparison (`str`): `">="` (Moment-DETR and most work; the default) or `">"` (2D-TAN).
        map_iou_thresholds (`Sequence[float]`, *optional*): the thresholds averaged into mAP; `None` skips mAP.
        map_max_predictions (`int`, *optional*): moments per query that mAP considers (Moment-DETR: 10).
        length_ranges (`Mapping[str, tuple[float, float]]`, *optional*): subsets `{name: (low, high)}` of the queries
            by ground-truth moment length in seconds, each `(low, high]`; [`QVHIGHLIGHTS_LENGTH_RANGES`] gives
            Moment-DETR's short / middle / long.
    """

    def metrics_of(predictions, references):
        results = recall_at_k(predictions, references, recall_at, iou_thresholds, iou_comparison)
        results["mIoU"] = mean_iou(predictions, references)
        if map_iou_thresholds is not None:
            results.update(
                mean_average_precision(
                    predictions, references, map_iou_thresholds, map_max_predictions, iou_comparison
                )
            )
        return results

    results = metrics_of(predictions, references)
    keys = list(results)
    for name, (min_length, max_length) in (length_ranges or {}).items():
        indices, subset_references = select_by_moment_length(predictions, references, min_length, max_length)
        subset = (
            metrics_of([predictions[index] for index in indices], subset_references)
            if indices
            else dict.fromkeys(keys, math.nan)
        )
        results.update({f"{name}/{key}": value for key, value in subset.items()})
    return results


def select_by_moment_length(
    predictions: Sequence, references: Sequence, min_length: float, max_length: float
) -> tuple[list[int], list[torch.Tensor]]:
    """
    The queries of a length subset, formed as Moment-DETR's `get_data_by_range` forms QVHighlights' short, middle
    and long subsets: a query belongs to it when at least one of its ground-truth moments has a length in
    `(min_length, max_length]`, and only those of its moments are kept as its reference (so one query with a 5 s and
    a 20 s window is in "short" against the 5 s window and in "middle" against the 20 s one).

    Returns:
        `tuple[list[int], list[torch.Tensor]]`: the indices of the queries in the subset, and their references
        restricted to the moments in the range (`[G, 2]` float64 tensors).
    """
    _check_queries(predictions, references)
    if not 0 <= min_length < max_length:
        raise ValueError(f"A length range needs 0 <= low < high, got ({min_length}, {max_length}].")
    indices, subset_references = [], []
    for index, reference in enumerate(references):
        moments = as_reference_moments(reference, f"references[{index}]")
        lengths = moments[:, 1] - moments[:, 0]
        in_range = (lengths > min_length) & (lengths <= max_length)
        if in_range.any():
            indices.append(index)
            subset_references.append(moments[in_range])
    return indices, subset_references


def saliency_labels(
    reference: Mapping, clip_seconds: float = QVHIGHLIGHTS_CLIP_SECONDS, where: str = "reference"
) -> torch.Tensor:
    """
    The annotators' saliency scores of every clip of a video, 0 for the clips not listed (Moment-DETR's
    `mk_gt_scores`).

    Args:
        reference (`Mapping`): a QVHighlights query (a row of `load_grounding_dataset("qvhighlights", ...)` or a line
            of its file): `"duration"` in seconds, `"relevant_clip_ids"` (indices of `clip_seconds` clips) and
            `"saliency_scores"` (per relevant clip, one score per annotator, 0-4).
        clip_seconds (`float`): the clip length; the video has `int(duration / clip_seconds)` clips.
        where (`str`): how to name the reference in error messages.

    Returns:
        `torch.Tensor`: `[num_clips, num_annotators]` float64 scores.
    """
    missing = {"duration", "relevant_clip_ids", "saliency_scores"} - set(reference)
    if missing or reference["relevant_clip_ids"] is None or reference["saliency_scores"] is None:
        raise ValueError(
            f"{where} needs 'duration', 'relevant_clip_ids' and 'saliency_scores' (QVHighlights' highlight "
            f"annotations); {sorted(missing) or 'some are None'}."
        )
    num_clips = int(float(reference["duration"]) / clip_seconds)
    clip_ids, scores = list(reference["relevant_clip_ids"]), list(reference["saliency_scores"])
    if not clip_ids or len(clip_ids) != len(scores) or len({len(row) for row in scores}) != 1:
        raise ValueError(
            f"{where} must list one row of annotator scores per relevant clip, at least one, all rows of the same "
            f"length; got {len(clip_ids)} clip ids and rows of lengths {[len(row) for row in scores]}."
        )
    outside = [clip for clip in clip_ids if not 0 <= clip < num_clips]
    if outside:
        raise ValueError(
            f"{where} has relevant clips {outside} outside the {num_clips} clips of {clip_seconds:g} s of its "
            f"{reference['duration']} s video."
        )
    labels = torch.zeros(num_clips, len(scores[0]), dtype=torch.float64)
    labels[torch.tensor(clip_ids, dtype=torch.long)] = torch.tensor(scores, dtype=torch.float64)
    return labels


def saliency_targets(
    reference: Mapping, clip_spans, clip_seconds: float = QVHIGHLIGHTS_CLIP_SECONDS, where: str = "reference"
) -> torch.Tensor:
    """
    A query's highlight annotations as one saliency target in `[0, 1]` per clip of a model's input (the
    `saliency_labels` of `LocVTPForTemporalGrounding`): the annotation clips' mean annotator score / 4, averaged over
    the annotation clips the model clip overlaps, weighted by the overlap. The model's clips have their own times
    (`clip_spans` of the processor's grounding route, or clips cut evenly over the duration for stored features), so
    they need not line up with the annotation clips. NaN ("no label") for a model clip that overlaps no annotation
    clip (e.g. past the last whole annotation clip) or has no length.

    Args:
        reference (`Mapping`): the query's annotations (see [`saliency_labels`]).
        clip_spans (`[C, 2]`): `(start, end)` in seconds of each model clip.
        clip_seconds (`float`): the annotation clip length.
        where (`str`): how to name the reference in error messages.

    Returns:
        `torch.Tensor`: float32 `[C]`.
    """
    labels = saliency_labels(reference, clip_seconds, where)
    values = labels.mean(dim=1) / HIGHLIGHT_MAX_SCORE
    spans = torch.as_tensor(_plain(clip_spans), dtype=torch.float64).reshape(-1, 2)
    starts = torch.arange(len(labels), dtype=torch.float64) * clip_seconds
    overlap = (
        torch.minimum(spans[:, 1:], starts + clip_seconds) - torch.maximum(spans[:, :1], starts)
    ).clamp(min=0)  # [C, A]
    covered = overlap.sum(dim=1)
    targets = (overlap @ values) / covered
    return targets.masked_fill(covered == 0, float("nan")).float()


def saliency_at_annotation_clips(
    scores, clip_spans, duration: float, clip_seconds: float = QVHIGHLIGHTS_CLIP_SECONDS
) -> torch.Tensor:
    """
    The inverse of [`saliency_targets`] for evaluation: a model's per-clip saliency scores as one score per
    annotation clip of the video (the `int(duration / clip_seconds)` clips `[k c, (k + 1) c)` that
    [`highlight_metrics`] scores), each the score of the model clip covering the annotation clip's centre (the first
    one whose `[start, end)` holds it) or, where none does (the processor's clip spans cover the sampled frames, not
    always the whole video), the model clip nearest to it (the first of equally near ones).

    Args:
        scores (`[C]`): the model's score of each of its clips.
        clip_spans (`[C, 2]`): `(start, end)` in seconds of each model clip.
        duration (`float`): the video's duration in seconds.
        clip_seconds (`float`): the annotation clip length.

    Returns:
        `torch.Tensor`: float64 `[int(duration / clip_seconds)]`.
    """
    scores = torch.as_tensor(_plain(scores), dtype=torch.float64).flatten()
    spans = torch.as_tensor(_plain(clip_spans), dtype=torch.float64).reshape(-1, 2)
    if not len(scores) or len(scores) != len(spans):
        raise ValueError(f"Need one score per clip span, got {len(scores)} scores and {len(spans)} spans.")
    centres = (torch.arange(int(float(duration) / clip_seconds), dtype=torch.float64) + 0.5)[:, None] * clip_seconds
    starts, ends = spans[:, 0], spans[:, 1]
    distance = torch.maximum(starts - centres, centres - ends).clamp(min=0)  # [A, C]
    inside = (starts <= centres) & (centres < ends)
    return scores[distance.masked_fill(inside, -1.0).argmin(dim=1)]


def highlight_average_precision(relevant: torch.Tensor, scores: torch.Tensor) -> float:
    """
    Average precision of one ranking of clips, exactly as Moment-DETR's `get_ap` computes it (with scikit-learn's
    `precision_recall_curve`): the clips are cut at every distinct score, best first; the precision of each cut is
    made non-increasing (the best precision of this or any later cut); AP is the mean of it over the cuts that add at
    least one relevant clip. Clips with tied scores enter together, so this is not the recall-weighted AP when ties
    hold relevant clips. 1 when every clip is relevant, 0 when none is.

    Args:
        relevant (`[C]`): whether each clip is relevant (bool or 0/1).
        scores (`[C]`): the predicted saliency of each clip.
    """
    relevant = relevant.to(torch.float64)
    values, groups = torch.unique(scores.to(torch.float64), sorted=True, return_inverse=True)
    # per distinct score, best first: the relevant clips and all clips it adds to the cut
    added_relevant = torch.zeros(len(values), dtype=torch.float64).index_add_(0, groups, relevant).flip(0)
    added = torch.zeros(len(values), dtype=torch.float64).index_add_(0, groups, torch.ones_like(relevant)).flip(0)
    precision = added_relevant.cumsum(0) / added.cumsum(0)
    interpolated = precision.flip(0).cummax(0).values.flip(0)
    recalls = added_relevant > 0
    return float(interpolated[recalls].mean()) if recalls.any() else 0.0


def highlight_metrics(
    saliency_predictions: Sequence[Sequence[float]],
    saliency_references: Sequence[Mapping],
    thresholds: Mapping[str, float] = HIGHLIGHT_SALIENCY_THRESHOLDS,
    clip_seconds: float = QVHIGHLIGHTS_CLIP_SECONDS,
) -> dict[str, float]:
    """
    QVHighlights highlight detection, as Moment-DETR's `eval_highlight`, at each level of `thresholds` (a clip is
    relevant for an annotator who scored it at least the level; clips not listed score 0):

    - `"HL-mAP@{level}"`: the mean over queries and annotators of the [`highlight_average_precision`] of the
      predicted clip scores against that annotator's relevant clips. The predicted scores are cut, or padded with 0,
      to the video's `int(duration / clip_seconds)` clips.
    - `"HL-Hit1@{level}"`: the fraction of queries whose best-scored clip (the first of equal ones) is relevant for
      at least one annotator; a clip past the end of the video is a miss.

    Args:
        saliency_predictions (`Sequence[Sequence[float]]`): per query, a score for each clip of the video, in order.
        saliency_references (`Sequence[Mapping]`): per query, its annotations (see [`saliency_labels`]).
        thresholds (`Mapping[str, float]`): `{level name: minimum score}`; Moment-DETR's Fair, Good, VeryGood by
            default.
        clip_seconds (`float`): the clip length.

    Returns:
        `dict[str, float]`: `"HL-mAP@{level}"` and `"HL-Hit1@{level}"` for each level, fractions in `[0, 1]`.
    """
    _check_queries(saliency_predictions, saliency_references, "saliency_predictions", "saliency_references")
    queries = []
    for index, (prediction, reference) in enumerate(zip(saliency_predictions, saliency_references)):
        message = f"saliency_predictions[{index}] must be a non-empty list of finite scores, got {prediction!r:.80}."
        try:
            scores = torch.as_tensor(_plain(prediction), dtype=torch.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(message) from error
        if scores.ndim != 1 or not len(scores) or not torch.isfinite(scores).all():
            raise ValueError(message)
        labels = saliency_labels(reference, clip_seconds, f"saliency_references[{index}]")
        fitted = torch.zeros(len(labels), dtype=torch.float64)
        fitted[: min(len(scores), len(labels))] = scores[: len(labels)]
        queries.append((labels, scores, fitted))
    results = {}
    for level, minimum in thresholds.items():
        average_precisions, hits = [], []
        for labels, scores, fitted in queries:
            relevant = labels >= minimum
            average_precisions += [highlight_average_precision(column, fitted) for column in relevant.T]
            top = int(scores.argmax())
            hits.append(top < len(relevant) and bool(relevant[top].any()))
        results[f"HL-mAP@{level}"] = sum(average_precisions) / len(average_precisions)
        results[f"HL-Hit1@{level}"] = sum(hits) / len(hits)
    return results


def moment_detr_metrics(
    predictions: Sequence | None = None,
    references: Sequence | None = None,
    saliency_predictions: Sequence[Sequence[float]] | None = None,
    saliency_references: Sequence[Mapping] | None = None,
    brief: bool = True,
) -> dict:
    """
    The QVHighlights metrics as Moment-DETR's `standalone_eval/eval.py` (`eval_submission`) reports them, under its
    key names and in its units (percentages rounded to 2 decimals), to compare with published tables line by line.

    Moment retrieval (with `predictions` and `references`) on the full set and on the short / middle / long subsets
    ([`QVHIGHLIGHTS_LENGTH_RANGES`]): mAP over IoU 0.5:0.05:0.95 of the 10 best windows and R1 at those IoUs.
    Highlight detection (with `saliency_predictions` and `saliency_references`): [`highlight_metrics`].

    Args:
        predictions, references: as for [`grounding_metrics`]; give scored windows (`[start, end, score]`) as
            Moment-DETR's `pred_relevant_windows`.
        saliency_predictions, saliency_references: as for [`highlight_metrics`].
        brief (`bool`, *optional*, defaults to `True`): only the `"brief"` part, a flat dict: `"MR-full-mAP"`,
            `"MR-full-mAP@0.5"`, `"MR-full-mAP@0.75"`, `"MR-full-R1@0.5"`, `"MR-full-R1@0.7"`, `"MR-long-mAP"`,
            `"MR-middle-mAP"`, `"MR-short-mAP"` (sorted by key), then `"HL-min-{level}-mAP"` and
            `"HL-min-{level}-Hit1"` for Fair, Good and VeryGood. With `False`, the whole output: `{"brief": ...,`
            then by sorted key `"HL-min-{level}": {"HL-mAP", "HL-Hit1"}` and `"full"`, `"long"`, `"middle"`,
            `"short"`: `{"MR-mAP": {"0.5", ..., "0.95", "average"}, "MR-R1": {"0.5", ..., "0.95"}}}`.

    A subset without queries gets NaN values (Moment-DETR's own code fails on it).
    """
    if (predictions is None) != (references is None) or (saliency_predictions is None) != (
        saliency_references is None
    ):
        raise ValueError(
            "Give `predictions` with `references`, and `saliency_predictions` with `saliency_references`."
        )
    if predictions is None and saliency_predictions is None:
        raise ValueError("Nothing to evaluate: give moment `predictions` and / or `saliency_predictions`.")

    def percent(value: float) -> float:
        return value if math.isnan(value) else float(f"{100 * value:.2f}")

    thresholds = [f"{threshold:g}" for threshold in MAP_IOU_THRESHOLDS]
    details, summary = {}, {}
    if predictions is not None:
        results = grounding_metrics(
            predictions,
            references,
            recall_at=(1,),
            iou_thresholds=MAP_IOU_THRESHOLDS,
            length_ranges=QVHIGHLIGHTS_LENGTH_RANGES,
        )
        for subset in ("full", *QVHIGHLIGHTS_LENGTH_RANGES):
            prefix = "" if subset == "full" else f"{subset}/"
            details[subset] = {
                "MR-mAP": {
                    **{t: percent(results[f"{prefix}mAP@{t}"]) for t in thresholds},
                    "average": percent(results[f"{prefix}mAP"]),
                },
                "MR-R1": {t: percent(results[f"{prefix}R@1,IoU={t}"]) for t in thresholds},
            }
            summary[f"MR-{subset}-mAP"] = details[subset]["MR-mAP"]["average"]
        summary.update(
            {
                "MR-full-mAP@0.5": details["full"]["MR-mAP"]["0.5"],
                "MR-full-mAP@0.75": details["full"]["MR-mAP"]["0.75"],
                "MR-full-R1@0.5": details["full"]["MR-R1"]["0.5"],
                "MR-full-R1@0.7": details["full"]["MR-R1"]["0.7"],
            }
        )
        summary = dict(sorted(summary.items()))
    if saliency_predictions is not None:
        results = highlight_metrics(saliency_predictions, saliency_references)
        for level in HIGHLIGHT_SALIENCY_THRESHOLDS:
            scores = {"HL-mAP": percent(results[f"HL-mAP@{level}"]), "HL-Hit1": percent(results[f"HL-Hit1@{level}"])}
            details[f"HL-min-{level}"] = scores
            summary.update({f"HL-min-{level}-mAP": scores["HL-mAP"], f"HL-min-{level}-Hit1": scores["HL-Hit1"]})
    return summary if brief else {"brief": summary, **dict(sorted(details.items()))}


def _iou_matrices(predictions: Sequence, references: Sequence, union: str) -> list[torch.Tensor]:
    """`N` float64 tensors `[P_i, G_i]`: IoU of each ranked predicted moment with each ground-truth moment."""
    _check_queries(predictions, references)
    matrices = []
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        moments, _ = as_ranked_moments(prediction, f"predictions[{index}]")
        matrices.append(temporal_iou(moments, as_reference_moments(reference, f"references[{index}]"), union))
    return matrices


def _check_queries(
    predictions: Sequence, references: Sequence, predictions_name="predictions", references_name="references"
) -> None:
    if isinstance(predictions, (str, Mapping)) or isinstance(references, (str, Mapping)):
        raise ValueError(f"`{predictions_name}` and `{references_name}` must be sequences with one entry per query.")
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} {predictions_name} and {len(references)} {references_name}; give exactly one of "
            "each per query."
        )
    if len(predictions) == 0:
        raise ValueError(f"No queries to evaluate: `{predictions_name}` and `{references_name}` are empty.")


def _row_of(item, where: str) -> list[float]:
    if isinstance(item, Mapping):
        missing = {"start", "end"} - set(item)
        if missing:
            raise ValueError(f"{where} lacks {sorted(missing)}; a moment dict has 'start', 'end' and maybe 'score'.")
        keys = ("start", "end", "score") if "score" in item else ("start", "end")
        return [float(item[key]) for key in keys]
    row = _plain(item)
    if not isinstance(row, (list, tuple)) or len(row) not in (2, 3):
        raise ValueError(f"{where} must be [start, end], [start, end, score] or a dict, got {item!r}.")
    return [float(value) for value in row]


def _plain(value):
    """Tensors and arrays as nested lists, so that every input form is validated the same way."""
    return value.tolist() if hasattr(value, "tolist") else value


def _check_moments(moments: torch.Tensor, where: str) -> None:
    if not torch.isfinite(moments).all():
        raise ValueError(f"{where} has a non-finite start or end: {moments.tolist()}.")
    backwards = (moments[:, 1] < moments[:, 0]).nonzero().flatten().tolist()
    if backwards:
        raise ValueError(f"{where} has moments that end before they start: {moments[backwards].tolist()}.")


def _check_thresholds(iou_thresholds: Sequence[float]) -> None:
    if not iou_thresholds or any(not 0 <= threshold <= 1 for threshold in iou_thresholds):
        raise ValueError(f"`iou_thresholds` must be one or more IoUs in [0, 1], got {list(iou_thresholds)}.")
