"""`evaluate` metric for text-video retrieval, wrapping `locvtp_hf.retrieval_metrics`."""

import datasets
import evaluate
import torch

from locvtp_hf.retrieval_metrics import text_video_retrieval_metrics


_DESCRIPTION = """
Text-video retrieval metrics in both directions from a text-by-video similarity matrix: R@k (the fraction of queries
whose correct answer is among the k best, in [0, 1]), median and mean rank. Text-to-video: each text retrieves among
all videos. Video-to-text: each video that has a text retrieves among all texts; any of its texts counts (the rank
of its best-placed one). Ties: a wrong candidate that scores exactly as high as the best correct one ranks before
it, so equal scores never help (CLIP4Clip-style code counts a tied query once per tied position instead, so its
numbers differ when scores tie). Optionally the same metrics after DSL or inverted-softmax re-normalisation, under
prefixed keys, beside the plain ones.
"""

_CITATION = """
@inproceedings{cao2022locvtp,
  title={LocVTP: Video-Text Pre-training for Temporal Localization},
  author={Cao, Meng and Yang, Tianyu and Weng, Junwu and Zhang, Can and Wang, Jue and Zou, Yuexian},
  booktitle={ECCV}, year={2022}
}
@article{cheng2021improving,
  title={Improving Video-Text Retrieval by Multi-Stream Corpus Alignment and Dual Softmax Loss},
  author={Cheng, Xing and Lin, Hezheng and Wu, Xiangyu and Yang, Fan and Shen, Dong},
  journal={arXiv:2109.04290}, year={2021}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): one row per text query: its score with every video (the same videos, in the
        same order, for every row).
    references (`list[int]`): per text, the index of its video in the rows of `predictions`.
    ks (`list[int]`, defaults to `[1, 5, 10]`): the k of R@k.
    renormalization (`str`, *optional*): `"dsl"` or `"inverted_softmax"`: also report the re-normalised metrics.
    temperature (`float`, defaults to 0.01): the temperature of the re-normalisation's softmax over the queries.
Returns:
    `dict`: `text_to_video_R@k`, `text_to_video_median_rank`, `text_to_video_mean_rank`, the same for
    `video_to_text`, `num_texts`, `num_videos`, and with `renormalization` the same keys prefixed by its name.
Examples:
    >>> metric = evaluate.load(locvtp_hf.metrics.metric_path("text_video_retrieval"))
    >>> results = metric.compute(predictions=[[0.9, 0.1], [0.3, 0.8]], references=[0, 1], ks=[1])
    >>> results["text_to_video_R@1"], results["video_to_text_median_rank"]
    (1.0, 1.0)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TextVideoRetrieval(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.List(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            codebase_urls=["https://github.com/mengcaopku/LocVTP"],
        )

    def _compute(self, predictions, references, ks=(1, 5, 10), renormalization=None, temperature=0.01):
        lengths = {len(row) for row in predictions}
        if len(lengths) > 1:
            raise ValueError(f"Every prediction row must score the same videos; got rows of {sorted(lengths)} scores.")
        similarity = torch.tensor(predictions, dtype=torch.float64)
        return text_video_retrieval_metrics(similarity, references, tuple(ks), renormalization, temperature)
