"""`evaluate` metric for temporal grounding (moment retrieval), wrapping `locvtp_hf.grounding_metrics`."""

import datasets
import evaluate

from locvtp_hf.grounding_metrics import MAP_IOU_THRESHOLDS
from locvtp_hf.grounding_metrics import MAP_MAX_PREDICTIONS
from locvtp_hf.grounding_metrics import RECALL_AT
from locvtp_hf.grounding_metrics import RECALL_IOU_THRESHOLDS
from locvtp_hf.grounding_metrics import grounding_metrics
from locvtp_hf.grounding_metrics import highlight_metrics
from locvtp_hf.grounding_metrics import moment_detr_metrics


_DESCRIPTION = """
Temporal grounding metrics: R@k at IoU t (the fraction of queries with one of the k best predicted moments at IoU >= t,
or > t, with a ground-truth moment), mIoU of the top-1 moment, and the QVHighlights / Moment-DETR mean average
precision over IoU 0.5:0.05:0.95 for queries with several ground-truth windows. A prediction's IoU with several
ground-truth moments is its best one. Optionally: the same on subsets of the queries by ground-truth moment length
(QVHighlights' short / middle / long), QVHighlights highlight detection (HL-mAP and HL-Hit1 at the Fair / Good /
VeryGood saliency levels), and Moment-DETR's own key names and percentages. Values are fractions in [0, 1] otherwise.
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
    predictions (`list[list[list[float]]]` or `list[list[dict]]`): per query, its predicted moments best first, each
        `[start, end]` or `[start, end, score]` in seconds (with scores the moments are re-ranked by score), or the
        `video-temporal-grounding` pipeline's own output: `{"start", "end", "score"}` dicts.
    references (`list[list[list[float]]]` or `list[list[float]]`): per query, its ground-truth moments `[[start, end],
        ...]`, or a single `[start, end]`.
    iou_comparison (`str`, defaults to `">="`): `">="` (Moment-DETR and most work) or `">"` (2D-TAN's code).
    recall_at (`list[int]`, defaults to `[1, 5]`): the k of R@k.
    iou_thresholds (`list[float]`, defaults to `[0.3, 0.5, 0.7]`): the IoU thresholds of R@k.
    map_iou_thresholds (`list[float]` or `None`, defaults to 0.5:0.05:0.95): thresholds averaged into mAP; `None`
        skips mAP.
    map_max_predictions (`int`, defaults to 10): moments per query that mAP considers.
    length_ranges (`dict[str, list[float]]`, *optional*): subsets `{name: [low, high]}` of the queries whose
        ground-truth moments (only those) have a length in `(low, high]` seconds, as Moment-DETR forms them;
        `locvtp_hf.grounding_metrics.QVHIGHLIGHTS_LENGTH_RANGES` gives its short / middle / long.
    saliency_predictions (`list[list[float]]`, *optional*): per query, a saliency score for each 2-second clip.
    saliency_references (`list[dict]`, *optional*): per query, `{"duration", "relevant_clip_ids",
        "saliency_scores"}` (rows of the QVHighlights loader, or lines of its files); with `saliency_predictions`,
        adds the highlight metrics.
    moment_detr_keys (`bool`, defaults to `False`): return what Moment-DETR's `standalone_eval/eval.py` prints as
        "brief" instead (its key names, percentages rounded to 2 decimals, QVHighlights' protocol; the options above
        but the saliency ones do not apply).
Returns:
    `dict[str, float]`: `"R@{k},IoU={t}"`, `"mIoU"`, and `"mAP"` with `"mAP@{t}"` for every mAP threshold; the same
    as `"{subset}/{key}"` for each length subset (NaN for an empty one); `"HL-mAP@{level}"` and `"HL-Hit1@{level}"`
    with the saliency inputs. With `moment_detr_keys=True`: `"MR-full-mAP"`, `"MR-full-mAP@0.5"`,
    `"MR-full-mAP@0.75"`, `"MR-full-R1@0.5"`, `"MR-full-R1@0.7"`, `"MR-{long,middle,short}-mAP"` and
    `"HL-min-{Fair,Good,VeryGood}-{mAP,Hit1}"`.
Examples:
    >>> metric = evaluate.load(locvtp_hf.metrics.metric_path("temporal_grounding"))
    >>> metric.compute(predictions=[[[0.0, 4.0], [5.0, 9.0]]], references=[[[0.0, 2.0]]], map_iou_thresholds=None)
    {'R@1,IoU=0.3': 1.0, 'R@1,IoU=0.5': 1.0, 'R@1,IoU=0.7': 0.0, 'R@5,IoU=0.3': 1.0, 'R@5,IoU=0.5': 1.0, \
'R@5,IoU=0.7': 0.0, 'mIoU': 0.5}
"""

_MOMENTS = datasets.List(datasets.List(datasets.Value("float64")))
# what the video-temporal-grounding pipeline returns for one query
_PIPELINE_MOMENTS = datasets.List(
    {"start": datasets.Value("float64"), "end": datasets.Value("float64"), "score": datasets.Value("float64")}
)
_SINGLE_MOMENT = datasets.List(datasets.Value("float64"))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TemporalGrounding(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": predictions, "references": references})
                # the dict form first: `evaluate` takes the first that encodes, and a list of lists also encodes dicts
                for predictions in (_PIPELINE_MOMENTS, _MOMENTS)
                for references in (_MOMENTS, _SINGLE_MOMENT)
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
        length_ranges=None,
        saliency_predictions=None,
        saliency_references=None,
        moment_detr_keys=False,
    ):
        if moment_detr_keys:
            return moment_detr_metrics(predictions, references, saliency_predictions, saliency_references)
        results = grounding_metrics(
            predictions,
            references,
            recall_at=tuple(recall_at),
            iou_thresholds=tuple(iou_thresholds),
            iou_comparison=iou_comparison,
            map_iou_thresholds=None if map_iou_thresholds is None else tuple(map_iou_thresholds),
            map_max_predictions=map_max_predictions,
            length_ranges=length_ranges,
        )
        if (saliency_predictions is None) != (saliency_references is None):
            raise ValueError("Give `saliency_predictions` and `saliency_references` together.")
        if saliency_predictions is not None:
            results.update(highlight_metrics(saliency_predictions, saliency_references))
        return results
