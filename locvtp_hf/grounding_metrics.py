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
- Results are fractions in `[0, 1]` (papers print them multiplied by 100).
"""

from collections.abc import Mapping, Sequence

import torch


IOU_COMPARISONS = (">=", ">")
IOU_UNIONS = ("hull", "sum")
# R@{1,5} at IoU {0.3, 0.5, 0.7}: the Charades-STA / ActivityNet Captions / TACoS tables (2D-TAN and LocVTP).
RECALL_AT = (1, 5)
RECALL_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
# 0.5:0.05:0.95, rounded so that keys read "mAP@0.55" and not "mAP@0.5500000000000002" (as Moment-DETR does).
MAP_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))
# Moment-DETR's evaluation keeps the 10 best windows of each query for mAP.
MAP_MAX_PREDICTIONS = 10


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
) -> dict[str, float]:
    """
    All grounding metrics in one dict: `"R@{k},IoU={t}"` ([`recall_at_k`]), `"mIoU"` ([`mean_iou`]) and, unless
    `map_iou_thresholds` is `None`, `"mAP"` and `"mAP@{t}"` ([`mean_average_precision`]).

    Args:
        predictions (`Sequence`): `N` ranked predictions, one per query (see the module docstring).
        references (`Sequence`): `N` references: a `[start, end]` moment or a list of them per query.
        recall_at (`Sequence[int]`): the `k` of R@k.
        iou_thresholds (`Sequence[float]`): the IoU thresholds of R@k.
        iou_comparison (`str`): `">="` (Moment-DETR and most work; the default) or `">"` (2D-TAN).
        map_iou_thresholds (`Sequence[float]`, *optional*): the thresholds averaged into mAP; `None` skips mAP.
        map_max_predictions (`int`, *optional*): moments per query that mAP considers (Moment-DETR: 10).
    """
    results = recall_at_k(predictions, references, recall_at, iou_thresholds, iou_comparison)
    results["mIoU"] = mean_iou(predictions, references)
    if map_iou_thresholds is not None:
        results.update(
            mean_average_precision(predictions, references, map_iou_thresholds, map_max_predictions, iou_comparison)
        )
    return results


def _iou_matrices(predictions: Sequence, references: Sequence, union: str) -> list[torch.Tensor]:
    """`N` float64 tensors `[P_i, G_i]`: IoU of each ranked predicted moment with each ground-truth moment."""
    if isinstance(predictions, (str, Mapping)) or isinstance(references, (str, Mapping)):
        raise ValueError("`predictions` and `references` must be sequences with one entry per query.")
    if len(predictions) != len(references):
        raise ValueError(
            f"Got {len(predictions)} predictions and {len(references)} references; give exactly one of each per query."
        )
    if len(predictions) == 0:
        raise ValueError("No queries to evaluate: `predictions` and `references` are empty.")
    matrices = []
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        moments, _ = as_ranked_moments(prediction, f"predictions[{index}]")
        matrices.append(temporal_iou(moments, as_reference_moments(reference, f"references[{index}]"), union))
    return matrices


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
