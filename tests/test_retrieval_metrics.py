"""Retrieval metrics on hand-computed cases (ties, several captions per video, videos without captions), the DSL and
inverted-softmax re-normalisations, and the `evaluate` module loaded offline."""

import evaluate
import pytest
import torch

from locvtp_hf.metrics import metric_path
from locvtp_hf.retrieval_metrics import (
    dual_softmax,
    inverted_softmax,
    rank_metrics,
    retrieval_ranks,
    text_video_retrieval_metrics,
)


# 4 texts x 3 videos; texts 0 and 1 describe video 0, text 2 video 1, text 3 video 2.
SIMILARITY = torch.tensor(
    [
        [0.9, 0.1, 0.2],  # text 0: video 0 first -> rank 1
        [0.3, 0.3, 0.8],  # text 1: video 2 above, video 1 tied with video 0 -> rank 3
        [0.5, 0.4, 0.1],  # text 2: video 0 above video 1 -> rank 2
        [0.0, 0.6, 0.7],  # text 3: video 2 first -> rank 1
    ]
)
TEXT_TO_VIDEO = [0, 0, 1, 2]


def test_ranks_count_the_wrong_candidates_at_or_above_the_best_correct_one():
    relevance = torch.tensor(TEXT_TO_VIDEO)[:, None] == torch.arange(3)[None, :]
    assert retrieval_ranks(SIMILARITY, relevance).tolist() == [1, 3, 2, 1]
    # video-to-text, video 0 has texts 0 and 1: its best, text 0 (0.9), is first
    # video 1 has text 2 (0.4): texts 3 (0.6) and 1 (0.3 < 0.4) -> only text 3 above -> rank 2
    # video 2 has text 3 (0.7): text 1 (0.8) above -> rank 2
    assert retrieval_ranks(SIMILARITY.T, relevance.T).tolist() == [1, 2, 2]


def test_all_equal_scores_give_the_worst_rank_whatever_the_order():
    similarity = torch.zeros(3, 5)
    relevance = torch.zeros(3, 5, dtype=torch.bool)
    relevance[0, 0] = relevance[1, 2] = relevance[2, 4] = True
    assert retrieval_ranks(similarity, relevance).tolist() == [5, 5, 5]
    # with two correct candidates, the tie among them does not count against the query
    relevance[0, 1] = True
    assert retrieval_ranks(similarity, relevance)[0].item() == 4


def test_rank_metrics_by_hand():
    metrics = rank_metrics(torch.tensor([1, 3, 2, 1]), ks=(1, 2, 5))
    assert metrics == {"R@1": 0.5, "R@2": 0.75, "R@5": 1.0, "median_rank": 1.5, "mean_rank": 1.75}
    assert rank_metrics(torch.tensor([4, 1, 7]))["median_rank"] == 4.0


def test_both_directions_by_hand():
    metrics = text_video_retrieval_metrics(SIMILARITY, TEXT_TO_VIDEO, ks=(1, 5))
    assert metrics == {
        "text_to_video_R@1": 0.5,
        "text_to_video_R@5": 1.0,
        "text_to_video_median_rank": 1.5,
        "text_to_video_mean_rank": 1.75,
        "video_to_text_R@1": pytest.approx(1 / 3),
        "video_to_text_R@5": 1.0,
        "video_to_text_median_rank": 2.0,
        "video_to_text_mean_rank": pytest.approx(5 / 3),
        "num_texts": 4,
        "num_videos": 3,
    }


def test_a_video_without_captions_is_a_distractor_but_no_query():
    similarity = torch.cat([SIMILARITY, torch.tensor([[0.95], [0.0], [0.0], [0.0]])], dim=1)  # video 3: no text
    metrics = text_video_retrieval_metrics(similarity, TEXT_TO_VIDEO, ks=(1,))
    assert metrics["text_to_video_mean_rank"] == pytest.approx((2 + 3 + 2 + 1) / 4)  # text 0 now second
    assert metrics["video_to_text_mean_rank"] == pytest.approx(5 / 3)  # three video queries, as before
    assert metrics["num_videos"] == 4


def test_renormalizations_are_reported_beside_the_plain_metrics():
    # video 0 is a "hub": it scores highest for every text
    similarity = torch.tensor([[0.9, 0.8, 0.1], [0.9, 0.1, 0.85], [0.9, 0.2, 0.3]])
    metrics = text_video_retrieval_metrics(similarity, [1, 2, 0], ks=(1,), renormalization="dsl", temperature=0.1)
    assert metrics["text_to_video_R@1"] == pytest.approx(1 / 3)  # the plain figure is kept
    assert metrics["dsl_text_to_video_R@1"] == 1.0
    inverted = text_video_retrieval_metrics(similarity, [1, 2, 0], ks=(1,), renormalization="inverted_softmax")
    assert inverted["text_to_video_R@1"] == pytest.approx(1 / 3)
    assert inverted["inverted_softmax_text_to_video_R@1"] == 1.0

    # the formulas, on a 2 x 2 case: softmax over the queries (rows) of each candidate's column
    scores = torch.tensor([[1.0, 0.0], [0.5, 0.25]])
    column_softmax = torch.tensor([[1 / (1 + torch.e**-5), 1 / (1 + torch.e**2.5)],
                                   [1 / (1 + torch.e**5), 1 / (1 + torch.e**-2.5)]], dtype=torch.float64)
    torch.testing.assert_close(dual_softmax(scores, temperature=0.1), scores.double() * column_softmax)
    torch.testing.assert_close(inverted_softmax(scores, temperature=0.1), column_softmax.log())


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="point to videos outside"):
        text_video_retrieval_metrics(SIMILARITY, [0, 0, 1, 3])
    with pytest.raises(ValueError, match="one video index per text"):
        text_video_retrieval_metrics(SIMILARITY, [0, 1])
    with_nan = SIMILARITY.clone()
    with_nan[2, 0] = torch.nan
    with pytest.raises(ValueError, match="NaN or infinite scores in query rows \\[2\\]"):
        text_video_retrieval_metrics(with_nan, TEXT_TO_VIDEO)
    with pytest.raises(ValueError, match="renormalization must be one of"):
        text_video_retrieval_metrics(SIMILARITY, TEXT_TO_VIDEO, renormalization="qb_norm")
    with pytest.raises(ValueError, match="no correct candidate"):
        retrieval_ranks(SIMILARITY, torch.zeros(4, 3, dtype=torch.bool))


def test_the_evaluate_module_loads_offline_and_agrees():
    metric = evaluate.load(metric_path("text_video_retrieval"))
    for rows in (slice(0, 2), slice(2, 4)):  # batches of text queries
        metric.add_batch(predictions=SIMILARITY[rows].tolist(), references=TEXT_TO_VIDEO[rows])
    results = metric.compute(ks=[1, 5], renormalization="dsl")
    expected = text_video_retrieval_metrics(SIMILARITY.double(), TEXT_TO_VIDEO, ks=(1, 5), renormalization="dsl")
    assert results == pytest.approx(expected)
    with pytest.raises(ValueError, match="same videos"):
        metric.compute(predictions=[[0.1, 0.2], [0.3]], references=[0, 1])
