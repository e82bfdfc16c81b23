"""Grounding metrics and NMS on hand-computed cases (IoUs exactly at a threshold included); the `evaluate` module."""

import json
import math
import os

import pytest
import torch

from locvtp_hf import metrics
from locvtp_hf.grounding_datasets import load_grounding_dataset, read_qvhighlights_submission
from locvtp_hf.grounding_metrics import (
    MAP_IOU_THRESHOLDS,
    QVHIGHLIGHTS_LENGTH_RANGES,
    as_ranked_moments,
    average_precision,
    grounding_metrics,
    highlight_average_precision,
    highlight_metrics,
    mean_average_precision,
    mean_iou,
    moment_detr_metrics,
    recall_at_k,
    saliency_at_annotation_clips,
    saliency_labels,
    saliency_targets,
    select_by_moment_length,
)
from locvtp_hf.grounding_postprocessing import temporal_nms
from locvtp_hf.moment_geometry import candidate_moment_times, temporal_iou


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


# Length subsets: q0 has a 5 s and a 20 s window, q1 a 40 s window, q2 a 10 s one (in "short": (0, 10] includes 10).
SUBSET_PREDICTIONS = [[[10.0, 30.0, 0.9], [0.0, 5.0, 0.8]], [[0.0, 40.0, 1.0]], [[50.0, 60.0, 1.0]]]
SUBSET_REFERENCES = [[[0.0, 5.0], [10.0, 30.0]], [[0.0, 40.0]], [[0.0, 10.0]]]


def test_length_subsets_keep_the_windows_in_range_like_moment_detr():
    indices, references = select_by_moment_length(SUBSET_PREDICTIONS, SUBSET_REFERENCES, 0, 10)
    assert indices == [0, 2] and [r.tolist() for r in references] == [[[0.0, 5.0]], [[0.0, 10.0]]]
    indices, references = select_by_moment_length(SUBSET_PREDICTIONS, SUBSET_REFERENCES, 10, 30)
    assert indices == [0] and references[0].tolist() == [[10.0, 30.0]]
    results = grounding_metrics(
        SUBSET_PREDICTIONS, SUBSET_REFERENCES, recall_at=(1,), iou_thresholds=(0.5,),
        length_ranges=QVHIGHLIGHTS_LENGTH_RANGES,
    )
    # q0's top window [10, 30] is a hit in "middle" (against [10, 30]) and a miss in "short" (against [0, 5] only)
    assert results["short/R@1,IoU=0.5"] == 0.0 and results["middle/R@1,IoU=0.5"] == 1.0
    assert results["long/R@1,IoU=0.5"] == 1.0 and results["R@1,IoU=0.5"] == pytest.approx(2 / 3)
    # short AP: q0 finds [0, 5] at rank 2 -> 1/2; q2 misses -> 0
    assert results["short/mAP@0.5"] == 0.25 and results["middle/mAP"] == 1.0
    assert list(results) == [
        f"{prefix}{key}" for prefix in ("", "short/", "middle/", "long/") for key in ["R@1,IoU=0.5", "mIoU", "mAP"]
        + [f"mAP@{t:g}" for t in MAP_IOU_THRESHOLDS]
    ]
    empty = grounding_metrics(SUBSET_PREDICTIONS, SUBSET_REFERENCES, length_ranges={"huge": (100, 200)})
    assert all(math.isnan(value) for key, value in empty.items() if key.startswith("huge/"))
    with pytest.raises(ValueError, match=r"A length range needs 0 <= low < high, got \(30, 10\]"):
        select_by_moment_length(SUBSET_PREDICTIONS, SUBSET_REFERENCES, 30, 10)


def test_length_subsets_of_the_real_qvhighlights_val_split(real_data):
    path = real_data / "annotations" / "qvhighlights" / "highlight_val_release.jsonl"
    queries = load_grounding_dataset("qvhighlights", path)
    # counted from the raw file: queries with a window of length in (low, high]
    sizes = {
        name: len(select_by_moment_length(queries["moments"], queries["moments"], low, high)[0])
        for name, (low, high) in QVHIGHLIGHTS_LENGTH_RANGES.items()
    }
    assert sizes == {"short": 429, "middle": 957, "long": 574}


def test_moment_detr_key_names_and_percentages():
    brief = moment_detr_metrics(SUBSET_PREDICTIONS, SUBSET_REFERENCES)
    assert list(brief) == [
        "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-long-mAP",
        "MR-middle-mAP", "MR-short-mAP",
    ]
    assert brief["MR-full-R1@0.5"] == 66.67 and brief["MR-short-mAP"] == 25.0 and brief["MR-middle-mAP"] == 100.0
    full = moment_detr_metrics(SUBSET_PREDICTIONS, SUBSET_REFERENCES, brief=False)
    assert list(full) == ["brief", "full", "long", "middle", "short"] and full["brief"] == brief
    assert list(full["full"]["MR-mAP"]) == ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9",
                                           "0.95", "average"]
    assert list(full["short"]["MR-R1"]) == list(full["full"]["MR-mAP"])[:-1]
    highlights = moment_detr_metrics(
        saliency_predictions=SALIENCY_PREDICTIONS, saliency_references=SALIENCY_REFERENCES
    )
    assert list(highlights) == [f"HL-min-{level}-{name}" for level in ("Fair", "Good", "VeryGood")
                                for name in ("mAP", "Hit1")]
    assert highlights["HL-min-Fair-Hit1"] == 50.0
    with pytest.raises(ValueError, match="Give `predictions` with `references`"):
        moment_detr_metrics(SUBSET_PREDICTIONS)


def test_highlight_average_precision_by_hand():
    # ranks 1 and 3 relevant: precisions 1 and 2/3 -> 5/6
    assert highlight_average_precision(torch.tensor([1, 0, 1, 0]), torch.tensor([4.0, 3.0, 2.0, 1.0])) == (
        pytest.approx(5 / 6)
    )
    # ties enter together: cuts {0.9} (precision 1) and {0.9, 0.5 x3} (3/4), each adding relevant clips -> mean 0.875,
    # not the recall-weighted 1/3 * 1 + 2/3 * 3/4
    assert highlight_average_precision(torch.tensor([1, 1, 1, 0]), torch.tensor([0.9, 0.5, 0.5, 0.5])) == 0.875
    # interpolation: the precision at rank 2 (1/2) is raised to that of rank 4 (2/4 -> no change) and rank 5 (3/5)
    relevant, scores = torch.tensor([0, 1, 0, 1, 1]), torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    assert highlight_average_precision(relevant, scores) == pytest.approx(3 / 5)
    assert highlight_average_precision(torch.ones(3), torch.tensor([1.0, 2.0, 3.0])) == 1.0
    assert highlight_average_precision(torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])) == 0.0


def test_highlight_average_precision_matches_scikit_learns_curve():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        relevant = torch.randint(0, 2, (12,), generator=generator)
        relevant[0], relevant[1] = 0, 1
        scores = torch.randint(0, 5, (12,), generator=generator).double()  # many ties
        precision, recall, _ = sklearn_metrics.precision_recall_curve(relevant.numpy(), scores.numpy())
        # precision made non-increasing towards low recall, averaged where recall changes
        interpolated = torch.tensor(precision).cummax(0).values
        steps = torch.tensor(recall[1:] != recall[:-1])
        expected = float(interpolated[:-1][steps].mean())
        assert highlight_average_precision(relevant, scores) == pytest.approx(expected)


# Two videos of 8 s: 4 clips of 2 s, 3 annotators.
SALIENCY_REFERENCES = [
    # clip 1: scores 4, 1, 2; clip 2: 2, 2, 3; clips 0 and 3 are not listed (0)
    {"duration": 8, "relevant_clip_ids": [1, 2], "saliency_scores": [[4, 1, 2], [2, 2, 3]]},
    {"duration": 9, "relevant_clip_ids": [0], "saliency_scores": [[1, 3, 0]]},  # 4 clips: int(9 / 2)
]
# q0: best clip 1; q1: 5 scores, cut to 4, and the best one (the 5th) is past the video: a miss for Hit1
SALIENCY_PREDICTIONS = [[0.1, 0.9, 0.5, 0.2], [0.8, 0.1, 0.2, 0.3, 1.0]]


def test_highlight_metrics_by_hand():
    assert saliency_labels(SALIENCY_REFERENCES[0]).tolist() == [[0, 0, 0], [4, 1, 2], [2, 2, 3], [0, 0, 0]]
    results = highlight_metrics(SALIENCY_PREDICTIONS, SALIENCY_REFERENCES)
    levels = ("Fair", "Good", "VeryGood")
    assert list(results) == [f"HL-{name}@{level}" for level in levels for name in ("mAP", "Hit1")]
    # Fair (>= 2). q0 ranks clips 1, 2, 3, 0: annotator 1 relevant {1, 2} -> AP 1; annotator 2 {2} -> 1/2;
    # annotator 3 {1, 2} -> 1. q1 ranks clips 0, 3, 2, 1: annotators 1 and 3 none -> 0; annotator 2 {0} -> 1.
    assert results["HL-mAP@Fair"] == pytest.approx((1 + 1 / 2 + 1 + 0 + 1 + 0) / 6)
    # q0's best clip 1 is Fair for annotators 1 and 3 (a hit: the best annotator counts); q1's is past the end
    assert results["HL-Hit1@Fair"] == 0.5
    # VeryGood (>= 4): only annotator 1 of q0 has a relevant clip, clip 1, ranked first
    assert results["HL-mAP@VeryGood"] == pytest.approx(1 / 6) and results["HL-Hit1@VeryGood"] == 0.5
    # a prediction shorter than the video is padded with 0: q1's clip 0 still ranks first
    shorter = highlight_metrics([SALIENCY_PREDICTIONS[0], [0.8]], SALIENCY_REFERENCES)
    assert shorter["HL-mAP@Fair"] == results["HL-mAP@Fair"] and shorter["HL-Hit1@Fair"] == 1.0


def test_saliency_targets_average_the_overlapped_annotation_clips_by_hand():
    # 4 annotation clips of 2 s in 9 s (the last second has none); mean annotator score / 4: 0, 0.75, 0.5, 0
    reference = {"duration": 9.0, "relevant_clip_ids": [1, 2], "saliency_scores": [[4, 2], [2, 2]]}
    torch.testing.assert_close(
        saliency_targets(reference, [[0, 2], [2, 4], [4, 6], [6, 8]]), torch.tensor([0.0, 0.75, 0.5, 0.0])
    )
    # model clips of their own: [1, 3] is half clip 0 (0), half clip 1 (0.75); [3, 5] half clip 1, half clip 2 (0.5);
    # [7.5, 8.5] overlaps only clip 3 (in its annotated half); [8, 9] and the empty [5, 5] overlap none: no label
    targets = saliency_targets(reference, torch.tensor([[1.0, 3.0], [3.0, 5.0], [7.5, 8.5], [8.0, 9.0], [5.0, 5.0]]))
    torch.testing.assert_close(targets[:3], torch.tensor([0.375, 0.625, 0.0]))
    assert targets.dtype == torch.float32 and torch.isnan(targets[3:]).all()
    # the overlap weights: [1.5, 4.5] is 0.5 s of clip 0, 2 s of clip 1 and 0.5 s of clip 2
    assert saliency_targets(reference, [[1.5, 4.5]]).item() == pytest.approx((2 * 0.75 + 0.5 * 0.5) / 3)
    # the same annotation read as 1-second clips: [1, 3] holds clips 1 (0.75) and 2 (0.5)
    assert saliency_targets(dict(reference, duration=5.0), [[1, 3]], clip_seconds=1.0).tolist() == [0.625]
    with pytest.raises(ValueError, match="outside the 4 clips"):
        saliency_targets(dict(reference, relevant_clip_ids=[1, 4]), [[0, 2]])


def test_saliency_at_annotation_clips_takes_the_model_clip_covering_each_centre():
    # annotation clips of 2 s in 9 s: centres 1, 3, 5, 7; model clips [0, 3), [3, 6), [6, 9)
    scores = [0.1, 0.2, 0.3]
    spans = [[0, 3], [3, 6], [6, 9]]
    mapped = saliency_at_annotation_clips(scores, spans, 9.0)
    assert mapped.dtype == torch.float64 and mapped.tolist() == [0.1, 0.2, 0.2, 0.3]  # centre 3 is in [3, 6)
    # clips that do not tile the video (the frames a clip samples): the nearest, the first of equally near ones
    assert saliency_at_annotation_clips(scores, [[0.5, 1.0], [4.0, 4.5], [8.0, 8.5]], 9.0).tolist() == [
        0.1, 0.2, 0.2, 0.3,
    ]
    assert saliency_at_annotation_clips([0.1, 0.2], [[0.0, 1.0], [5.0, 6.0]], 9.0).tolist() == [0.1, 0.1, 0.2, 0.2]
    # the round trip on aligned clips gives each annotation clip its mean score / 4
    reference = {"duration": 8.0, "relevant_clip_ids": [1, 3], "saliency_scores": [[4, 3], [1, 0]]}
    aligned = [[0, 2], [2, 4], [4, 6], [6, 8]]
    round_trip = saliency_at_annotation_clips(saliency_targets(reference, aligned), aligned, 8.0)
    torch.testing.assert_close(round_trip, saliency_labels(reference).mean(dim=1) / 4, check_dtype=False)
    with pytest.raises(ValueError, match="one score per clip span, got 2 scores and 3 spans"):
        saliency_at_annotation_clips([0.1, 0.2], spans, 9.0)


@pytest.mark.parametrize(
    ("predictions", "references", "message"),
    [
        ([[1.0]], [{"duration": 4, "relevant_clip_ids": [2], "saliency_scores": [[1, 1, 1]]}],
         r"saliency_references\[0\] has relevant clips \[2\] outside the 2 clips of 2 s"),
        ([[1.0]], [{"duration": 4, "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 1, 1]]}],
         "one row of annotator scores per relevant clip"),
        ([[1.0]], [{"duration": 4, "relevant_clip_ids": None, "saliency_scores": None}], "needs 'duration'"),
        ([[]], SALIENCY_REFERENCES[:1], r"saliency_predictions\[0\] must be a non-empty list of finite scores"),
        ([[1.0]], SALIENCY_REFERENCES, "1 saliency_predictions and 2 saliency_references"),
    ],
)
def test_bad_highlight_input_is_named(predictions, references, message):
    with pytest.raises(ValueError, match=message):
        highlight_metrics(predictions, references)


def test_evaluate_module_length_subsets_highlights_and_moment_detr_keys():
    metric = metrics.load("temporal_grounding")
    results = metric.compute(
        predictions=SUBSET_PREDICTIONS, references=SUBSET_REFERENCES, length_ranges=QVHIGHLIGHTS_LENGTH_RANGES,
        saliency_predictions=SALIENCY_PREDICTIONS + [[1.0]],
        saliency_references=SALIENCY_REFERENCES + [SALIENCY_REFERENCES[0]],
    )
    expected = grounding_metrics(SUBSET_PREDICTIONS, SUBSET_REFERENCES, length_ranges=QVHIGHLIGHTS_LENGTH_RANGES)
    expected.update(highlight_metrics(SALIENCY_PREDICTIONS + [[1.0]], SALIENCY_REFERENCES + [SALIENCY_REFERENCES[0]]))
    assert results == expected
    brief = metric.compute(predictions=SUBSET_PREDICTIONS, references=SUBSET_REFERENCES, moment_detr_keys=True)
    assert brief == moment_detr_metrics(SUBSET_PREDICTIONS, SUBSET_REFERENCES)
    with pytest.raises(ValueError, match="Give `saliency_predictions` and `saliency_references` together"):
        metric.compute(predictions=[[[0.0, 1.0]]], references=[[[0.0, 1.0]]], saliency_predictions=[[1.0]])


def test_moment_detr_sample_submission_scores_exactly_as_published(real_data):
    """
    Moment-DETR's `standalone_eval/sample_val_preds.jsonl` scored against the QVHighlights val file gives its
    `sample_val_preds_metrics_raw.json` exactly; runs when both files are in `annotations/qvhighlights`.
    """
    folder = real_data / "annotations" / "qvhighlights"
    sample_files = ("sample_val_preds.jsonl", "sample_val_preds_metrics_raw.json")
    if not all((folder / name).is_file() for name in sample_files):
        pytest.skip(f"Moment-DETR's sample_val_preds.jsonl and sample_val_preds_metrics_raw.json are not in {folder}")
    submission = {row["qid"]: row for row in read_qvhighlights_submission(folder / "sample_val_preds.jsonl")}
    queries = list(load_grounding_dataset("qvhighlights", folder / "highlight_val_release.jsonl"))
    results = moment_detr_metrics(
        [submission[query["query_id"]]["pred_relevant_windows"] for query in queries],
        [query["moments"] for query in queries],
        [submission[query["query_id"]]["pred_saliency_scores"] for query in queries],
        queries,
        brief=False,
    )
    published = json.loads((folder / "sample_val_preds_metrics_raw.json").read_text())
    assert results == published and list(results["brief"]) == list(published["brief"])
