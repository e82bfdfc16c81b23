"""Grounding metrics and NMS on hand-computed cases (IoUs exactly at a threshold included); the `evaluate` module."""

import os

import pytest
import torch

from locvtp_hf import metrics
from locvtp_hf.grounding_metrics import (
    MAP_IOU_THRESHOLDS,
    as_ranked_moments,
    average_precision,
    grounding_metrics,
    mean_average_precision,
    mean_iou,
    recall_at_k,
    temporal_iou,
)
from locvtp_hf.grounding_postprocessing import temporal_nms
from locvtp_hf.modeling_locvtp import candidate_moment_times


# IoUs of each query's ranked predictions with its ground truth, by hand:
#   q0: [0, 4] vs [0, 2] -> 2 / 4 = 0.5; [10, 20] -> 0
#   q1: [0, 1] -> 0; [5, 15] vs [5, 12] -> 7 / 10 = 0.7; [0, 10] -> 5 / 12
#   q2: [20, 30] vs [0, 10] -> 0
#   q3: no prediction -> a miss
PREDICTIONS = [[[0, 4], [10, 20]], [[0, 1], [5, 15], [0, 10]], [[20, 30]], []]
REFERENCES = [[0, 2], [[5, 12]], [[0, 10]], [0, 1]]


def test_temporal_iou_by_hand():
    moments = torch.tensor([[0.0, 4.0], [5.0, 15.0], [3.0, 3.0]])
    others = torch.tensor([[0.0, 2.0], [5.0, 12.0], [20.0, 30.0]])
    expected = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(temporal_iou(moments, others), expected)


def test_recall_and_miou_by_hand_with_both_tie_conventions():
    inclusive = recall_at_k(PREDICTIONS, REFERENCES, iou_comparison=">=")
    assert inclusive == {
        "R@1,IoU=0.3": 0.25, "R@1,IoU=0.5": 0.25, "R@1,IoU=0.7": 0.0,
        "R@5,IoU=0.3": 0.5, "R@5,IoU=0.5": 0.5, "R@5,IoU=0.7": 0.25,
    }
    # q0's IoU 0.5 and q1's 0.7 sit exactly on a threshold: 2D-TAN's ">" no longer counts them there
    strict = recall_at_k(PREDICTIONS, REFERENCES, iou_comparison=">")
    assert strict == {
        "R@1,IoU=0.3": 0.25, "R@1,IoU=0.5": 0.0, "R@1,IoU=0.7": 0.0,
        "R@5,IoU=0.3": 0.5, "R@5,IoU=0.5": 0.25, "R@5,IoU=0.7": 0.0,
    }
    assert mean_iou(PREDICTIONS, REFERENCES) == pytest.approx((0.5 + 0 + 0 + 0) / 4)


@pytest.mark.parametrize(
    ("prediction", "reference", "threshold"),
    [([0.0, 10.0], [0.0, 3.0], 0.3), ([0.0, 4.0], [0.0, 2.0], 0.5), ([0.0, 10.0], [0.0, 7.0], 0.7)],
)
def test_iou_exactly_at_threshold(prediction, reference, threshold):
    key = f"R@1,IoU={threshold}"
    assert recall_at_k([[prediction]], [reference], iou_comparison=">=")[key] == 1.0
    assert recall_at_k([[prediction]], [reference], iou_comparison=">")[key] == 0.0


@pytest.mark.parametrize(
    ("prediction", "reference", "threshold", "sum_union_iou"),
    [
        ([0.8, 3.9], [1.1, 4.8], 0.7, 0.7000000000000001),  # 2.8 / 4.0
        ([0.0, 0.3], [0.0, 0.6], 0.5, 0.5000000000000001),  # 0.3 / 0.6
        ([0.0, 0.9], [0.2, 1.0], 0.7, 0.6999999999999998),  # 0.7 / 1.0
    ],
)
def test_recall_and_miou_divide_by_the_hull_like_2d_tan_and_moment_detr_r1(
    prediction, reference, threshold, sum_union_iou
):
    # IoUs of exactly `threshold` in decimal seconds: the hull max(ends) - min(starts) of 2D-TAN's `iou` and
    # Moment-DETR's R1 gives `threshold` itself, the length sum rounds off it
    pair = torch.tensor([prediction], dtype=torch.float64), torch.tensor([reference], dtype=torch.float64)
    assert temporal_iou(*pair).item() == threshold
    assert temporal_iou(*pair, union="sum").item() == sum_union_iou
    key = f"R@1,IoU={threshold}"
    assert recall_at_k([[prediction]], [reference], iou_comparison=">=")[key] == 1.0
    assert recall_at_k([[prediction]], [reference], iou_comparison=">")[key] == 0.0
    assert mean_iou([[prediction]], [reference]) == threshold


def test_map_divides_by_the_length_sum_like_moment_detr():
    # Moment-DETR's mAP (compute_temporal_iou_batch_cross) sees 0.6999999999999998 where its R1 sees 0.7
    results = grounding_metrics([[[0.0, 0.9]]], [[0.2, 1.0]], map_iou_thresholds=(0.65, 0.7))
    assert results["R@1,IoU=0.7"] == 1.0
    assert results["mAP@0.65"] == 1.0 and results["mAP@0.7"] == 0.0


def test_invalid_union_is_named():
    with pytest.raises(ValueError, match="`union` must be one of"):
        temporal_iou(torch.zeros(1, 2), torch.zeros(1, 2), union="span")


def test_nms_judges_float32_overlaps_in_float64():
    # cells [0, 1/16] and [0, 2/16] of a 5.6 s video: float32(0.7) is exactly 2 * float32(0.35), so their IoU is
    # exactly 0.5 and 2D-TAN (float64) keeps both at threshold 0.5; float32 arithmetic made it 0.50000006
    moments = candidate_moment_times(16, torch.tensor([5.6]))[0, 0, :2]
    assert moments.dtype == torch.float32 and moments.tolist() == [[0.0, 0.3499999940395355], [0.0, 0.699999988079071]]
    assert temporal_nms(moments, torch.tensor([0.8, 0.9]), iou_threshold=0.5).tolist() == [1, 0]
    # a whole 2D map: the kept moments do not depend on the dtype the moments come in
    grid = candidate_moment_times(16, torch.tensor([5.6]))[0].reshape(-1, 2)
    grid = grid[grid[:, 1] > grid[:, 0]]
    scores = torch.rand(len(grid), generator=torch.Generator().manual_seed(0))
    kept = temporal_nms(grid, scores, iou_threshold=0.5)
    assert kept.tolist() == temporal_nms(grid.double(), scores, iou_threshold=0.5).tolist()


def test_multi_moment_ground_truth_counts_the_best_matching_moment():
    # DiDeMo-style: 3 annotators; the prediction matches the second exactly
    references = [[[0, 5], [5, 10], [5, 15]]]
    assert recall_at_k([[[5, 10]]], references, recall_at=(1,), iou_thresholds=(0.7,)) == {"R@1,IoU=0.7": 1.0}
    assert mean_iou([[[5, 10]]], references) == 1.0
    # [0, 10] has IoU 0.5 with [0, 5] and with [5, 10], 1/3 with [5, 15]: its best is 0.5
    assert mean_iou([[[0, 10]]], references) == 0.5


def test_scores_rerank_and_dicts_are_accepted():
    scored = [
        [[10, 20, 0.2], [0, 4, 0.9]],
        [{"start": 0, "end": 1, "score": 0.3}, {"start": 5, "end": 15, "score": 0.8}],
    ]
    ranked = [[[0, 4], [10, 20]], [[5, 15], [0, 1]]]
    references = [[0, 2], [5, 12]]
    assert grounding_metrics(scored, references) == grounding_metrics(ranked, references)
    moments, scores = as_ranked_moments([[1, 2, 0.5], [3, 4, 0.5], [5, 6, 0.9]])
    assert moments.tolist() == [[5, 6], [1, 2], [3, 4]]  # stable among equal scores
    assert scores.tolist() == [0.9, 0.5, 0.5]


def test_average_precision_by_hand():
    # ground truth [0, 10], [20, 30]; ranked predictions: [0, 10] (IoU 1 with the first), [0, 9] (IoU 0.9 with the
    # already-claimed first: a false positive), [20, 25] (IoU exactly 0.5 with the second)
    predictions = [[[0, 10], [0, 9], [20, 25]]]
    references = [[[0, 10], [20, 30]]]
    # at 0.5 with ">=": TP, FP, TP -> precision 1, 1/2, 2/3 -> AP = (1 + 2/3) / 2; above 0.5 only the first is a TP
    inclusive = mean_average_precision(predictions, references, iou_comparison=">=")
    assert inclusive["mAP@0.5"] == pytest.approx(5 / 6)
    assert all(inclusive[f"mAP@{t:g}"] == pytest.approx(0.5) for t in MAP_IOU_THRESHOLDS[1:])
    assert inclusive["mAP"] == pytest.approx((5 / 6 + 9 * 0.5) / 10)
    strict = mean_average_precision(predictions, references, iou_comparison=">")
    assert strict["mAP@0.5"] == pytest.approx(0.5) and strict["mAP"] == pytest.approx(0.5)


def test_average_precision_interpolates_precision():
    # 3 ground-truth moments found at ranks 2, 5 and 6 (rank 4 repeats a claimed one): raw precision there is 1/2,
    # 2/5, 3/6; interpolation lifts 2/5 to the 1/2 reached later, so AP = (1/2 + 1/2 + 1/2) / 3 = 0.5 (not 0.467)
    reference = torch.tensor([[0.0, 10.0], [20.0, 30.0], [40.0, 50.0]])
    ranked = torch.tensor([[100.0, 110.0], [0.0, 10.0], [60.0, 70.0], [0.0, 10.0], [20.0, 30.0], [40.0, 50.0]])
    assert average_precision(temporal_iou(ranked, reference), 0.5) == pytest.approx(0.5)
    assert average_precision(torch.zeros(0, 3, dtype=torch.float64), 0.5) == 0.0


def test_average_precision_breaks_iou_ties_towards_the_later_ground_truth_like_moment_detr():
    # [1, 11] has IoU 9/11 with both windows; [2, 12] has IoU 1 with the second and 8/12 with the first. At 0.7,
    # Moment-DETR's argsort()[::-1] lets [1, 11] claim the second window, so [2, 12] is a false positive
    references = torch.tensor([[0.0, 10.0], [2.0, 12.0]])
    iou = temporal_iou(torch.tensor([[1.0, 11.0], [2.0, 12.0]]), references, union="sum")
    assert iou[0, 0] == iou[0, 1]
    assert average_precision(iou, 0.7) == 0.5
    # the same windows listed the other way round: [1, 11] claims [0, 10] and both predictions are hits
    assert average_precision(iou.flip(1), 0.7) == 1.0


def test_map_keeps_only_the_best_predictions():
    # the only true positive is ranked 11th: Moment-DETR's 10-window cut makes the AP 0
    predictions = [[[100 + 10 * i, 105 + 10 * i] for i in range(10)] + [[0, 10]]]
    assert mean_average_precision(predictions, [[0, 10]])["mAP"] == 0.0
    assert mean_average_precision(predictions, [[0, 10]], max_predictions=None)["mAP"] == pytest.approx(1 / 11)


def test_grounding_metrics_keys():
    results = grounding_metrics(PREDICTIONS, REFERENCES)
    assert list(results)[:7] == [
        "R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7", "R@5,IoU=0.3", "R@5,IoU=0.5", "R@5,IoU=0.7", "mIoU"
    ]
    assert list(results)[7:] == ["mAP"] + [f"mAP@{t:g}" for t in MAP_IOU_THRESHOLDS]
    assert "mAP" not in grounding_metrics(PREDICTIONS, REFERENCES, map_iou_thresholds=None)


@pytest.mark.parametrize(
    ("predictions", "references", "kwargs", "message"),
    [
        ([[[0, 1]]], [[0, 1], [0, 2]], {}, "1 predictions and 2 references"),
        ([[[0, 1]]], [[]], {}, r"references\[0\] has no ground-truth moment"),
        ([[[2, 1]]], [[0, 1]], {}, r"predictions\[0\] has moments that end before they start"),
        ([[[0, 1]]], [[0, float("nan")]], {}, r"references\[0\] has a non-finite"),
        ([[[0, 1], [0, 1, 0.5]]], [[0, 1]], {}, "mixes moments with and without a score"),
        ([[[0, 1, 2, 3]]], [[0, 1]], {}, r"predictions\[0\]\[0\] must be \[start, end\]"),
        ([[{"start": 0}]], [[0, 1]], {}, r"lacks \['end'\]"),
        ([[[0, 1]]], [[0, 1]], {"iou_comparison": "=>"}, "`iou_comparison` must be one of"),
        ([[[0, 1]]], [[0, 1]], {"iou_thresholds": (1.5,)}, "`iou_thresholds` must be"),
        ([], [], {}, "No queries to evaluate"),
    ],
)
def test_bad_input_is_named(predictions, references, kwargs, message):
    with pytest.raises(ValueError, match=message):
        grounding_metrics(predictions, references, **kwargs)


def test_evaluate_module_loads_offline_and_wraps_the_functions():
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    metric = metrics.load("temporal_grounding")
    predictions = [[[0.0, 10.0, 0.9], [0.0, 9.0, 0.5], [20.0, 25.0, 0.4]], [[5.0, 15.0], [0.0, 1.0]]]
    references = [[[0.0, 10.0], [20.0, 30.0]], [[5.0, 12.0]]]
    for prediction, reference in zip(predictions, references):
        metric.add_batch(predictions=[prediction], references=[reference])
    assert metric.compute(iou_comparison=">") == grounding_metrics(predictions, references, iou_comparison=">")
    # one [start, end] per reference is the second accepted input format
    single = metric.compute(predictions=[[[0.0, 4.0]]], references=[[0.0, 2.0]], map_iou_thresholds=None)
    assert single == grounding_metrics([[[0.0, 4.0]]], [[0.0, 2.0]], map_iou_thresholds=None)
    assert single["R@1,IoU=0.5"] == 1.0 and single["mIoU"] == 0.5
    with pytest.raises(ValueError, match="No metric 'bleu' ships with locvtp_hf"):
        metrics.metric_path("bleu")
