"""`evaluate` metric for temporal grounding (moment retrieval), wrapping `locvtp_hf.grounding_metrics`."""

import datasets
import evaluate

from locvtp_hf.grounding_metrics import MAP_IOU_THRESHOLDS
from locvtp_hf.grounding_metrics import MAP_MAX_PREDICTIONS
from locvtp_hf.grounding_metrics import RECALL_AT
from locvtp_hf.grounding_metrics import RECALL_IOU_THRESHOLDS
from locvtp_hf.grounding_metrics import grounding_metrics


_DESCRIPTION = """
Temporal grounding metrics: R@k at IoU t (the fraction of queries with one of the k best predicted moments at IoU >= t,
or > t, with a ground-truth moment), mIoU of the top-1 moment, and the QVHighlights / Moment-DETR mean average
precision over IoU 0.5:0.05:0.95 for queries with several ground-truth windows. A prediction's IoU with several
ground-truth moments is its best one. Values are fractions in [0, 1].
"""

_CITATION = """
@inproceedings{zhang2020learning,
  title={Learning 2D Temporal Adjacent Networks for Moment Localization with Natural Language},
  author={Zhang, Songyang and Peng, Houwen and Fu, Jianlong and Luo, Jiebo},
  booktitle={AAAI}, year={2020}
}
@inproceedings{lei2021detecting,
  title={QVHighlights: Detecting Moments and Highlights in Videos via Natural Language Queries},
  author={Lei, Jie and Berg, Tamara L. and Bansal, Mohit},
  booktitle={NeurIPS}, year={2021}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[list[float]]]`): per query, its predicted moments best first, each `[start, end]` or
        `[start, end, score]` in seconds (with scores the moments are re-ranked by score).
    references (`list[list[list[float]]]` or `list[list[float]]`): per query, its ground-truth moments `[[start, end],
        ...]`, or a single `[start, end]`.
    iou_comparison (`str`, defaults to `">="`): `">="` (Moment-DETR and most work) or `">"` (2D-TAN's code).
    recall_at (`list[int]`, defaults to `[1, 5]`): the k of R@k.
    iou_thresholds (`list[float]`, defaults to `[0.3, 0.5, 0.7]`): the IoU thresholds of R@k.
    map_iou_thresholds (`list[float]` or `None`, defaults to 0.5:0.05:0.95): thresholds averaged into mAP; `None`
        skips mAP.
    map_max_predictions (`int`, defaults to 10): moments per query that mAP considers.
Returns:
    `dict[str, float]`: `"R@{k},IoU={t}"`, `"mIoU"`, and `"mAP"` with `"mAP@{t}"` for every mAP threshold.
Examples:
    >>> metric = evaluate.load(locvtp_hf.metrics.metric_path("temporal_grounding"))
    >>> metric.compute(predictions=[[[0.0, 4.0], [5.0, 9.0]]], references=[[[0.0, 2.0]]], map_iou_thresholds=None)
    {'R@1,IoU=0.3': 1.0, 'R@1,IoU=0.5': 1.0, 'R@1,IoU=0.7': 0.0, 'R@5,IoU=0.3': 1.0, 'R@5,IoU=0.5': 1.0, \
'R@5,IoU=0.7': 0.0, 'mIoU': 0.5}
"""

_MOMENTS = datasets.List(datasets.List(datasets.Value("float64")))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TemporalGrounding(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": _MOMENTS, "references": _MOMENTS}),
                datasets.Features({"predictions": _MOMENTS, "references": datasets.List(datasets.Value("float64"))}),
            ],
            codebase_urls=["https://github.com/microsoft/2D-TAN", "https://github.com/jayleicn/moment_detr"],
        )

    def _compute(
        self,
        predictions,
        references,
        iou_comparison=">=",
        recall_at=RECALL_AT,
        iou_thresholds=RECALL_IOU_THRESHOLDS,
        map_iou_thresholds=MAP_IOU_THRESHOLDS,
        map_max_predictions=MAP_MAX_PREDICTIONS,
    ):
        return grounding_metrics(
            predictions,
            references,
            recall_at=tuple(recall_at),
            iou_thresholds=tuple(iou_thresholds),
            iou_comparison=iou_comparison,
            map_iou_thresholds=None if map_iou_thresholds is None else tuple(map_iou_thresholds),
            map_max_predictions=map_max_predictions,
        )
