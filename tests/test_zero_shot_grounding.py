"""Zero-shot grounding (`locvtp_hf.zero_shot_grounding`) and the head-free localization measures built on it
(`locvtp_hf.evaluation.localization_evaluation`)."""

import datasets
import pytest
import torch
import torch.nn.functional as F

from locvtp_hf import evaluation
from locvtp_hf.grounding_postprocessing import clip_boundaries
from locvtp_hf.zero_shot_grounding import zero_shot_grounding, zero_shot_moment_scores, zero_shot_saliency


def test_moment_scores_are_sums_of_centred_similarities():
    similarity = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 1 + [0] * 5])
    scores = zero_shot_moment_scores(similarity, mask)
    for q in range(3):
        real = int(mask[q].sum())
        centred = similarity[q, :real].double() - similarity[q, :real].double().mean()
        for i in range(6):
            for j in range(6):
                if i <= j < real:
                    assert scores[q, i, j].item() == pytest.approx(centred[i : j + 1].sum().item())
                else:
                    assert scores[q, i, j] == float("-inf")
    assert scores[0, 0, 5].item() == pytest.approx(0.0, abs=1e-12)  # the whole video scores 0


def test_the_stretch_that_matches_the_query_is_the_top_moment():
    text = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    clips = -text[:, None, :].repeat(1, 10, 1)
    clips[0, 3:6] = text[0]
    clips[1, 0:2] = text[1]
    segments = torch.arange(10, dtype=torch.float64) * 2.0
    spans = torch.stack([segments + 0.8, segments + 1.2], dim=-1)[None].repeat(2, 1, 1)
    moments = zero_shot_grounding(text, clips, spans, video_durations=torch.tensor([20.0, 16.0]),
                                  clip_mask=torch.tensor([[1] * 10, [1] * 8 + [0] * 2]), top_k=3)
    assert (moments[0][0]["start"], moments[0][0]["end"]) == pytest.approx((6.0, 12.0))
    assert (moments[1][0]["start"], moments[1][0]["end"]) == pytest.approx((0.0, 4.0))
    assert all(len(found) <= 3 for found in moments) and moments[0][0]["score"] > moments[0][1]["score"]
    # clip 7 is the last real clip of the second video: its stretch ends at the duration
    assert clip_boundaries(spans, torch.tensor([20.0, 16.0]), torch.tensor([[1] * 10, [1] * 8 + [0] * 2]))[1, 8] == 16.0


def test_zero_shot_saliency_is_the_cosine_of_each_clip_with_the_query():
    generator = torch.Generator().manual_seed(2)
    clips, text = torch.randn(2, 5, 8, generator=generator) * 3, torch.randn(2, 8, generator=generator)
    mask = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    saliency = zero_shot_saliency(clips, text, mask)
    for q in range(2):
        for t in range(5):
            if mask[q, t]:
                by_hand = float(clips[q, t] @ text[q]) / float(clips[q, t].norm() * text[q].norm())
                assert saliency[q, t].item() == pytest.approx(by_hand, abs=1e-6)
            else:
                assert saliency[q, t] == float("-inf")
    assert torch.equal(zero_shot_saliency(clips, text)[0], saliency[0])
    with pytest.raises(ValueError, match="same B queries"):
        zero_shot_saliency(clips, text[:1])
    with pytest.raises(ValueError, match=r"clip_mask must have shape \(2, 5\)"):
        zero_shot_saliency(clips, text, mask[:, :4])


def test_zero_shot_grounding_returns_the_saliency_with_the_clip_times():
    text = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    clips = F.normalize(torch.randn(2, 10, 8, generator=torch.Generator().manual_seed(3)), dim=-1)
    segments = torch.arange(10, dtype=torch.float64) * 2.0
    spans = torch.stack([segments + 0.8, segments + 1.2], dim=-1)[None].repeat(2, 1, 1)
    mask, durations = torch.tensor([[1] * 10, [1] * 8 + [0] * 2]), torch.tensor([20.0, 16.0])
    moments = zero_shot_grounding(text, clips, spans, mask, durations, top_k=3)
    results = zero_shot_grounding(text, clips, spans, mask, durations, top_k=3, return_saliency=True)
    assert [result["moments"] for result in results] == moments
    boundaries = clip_boundaries(spans, durations, mask)
    cosine = zero_shot_saliency(clips, text, mask)
    for q, (result, num_clips) in enumerate(zip(results, (10, 8))):
        assert result["saliency"]["times"] == [[2.0 * t, 2.0 * (t + 1)] for t in range(num_clips)]
        assert result["saliency"]["times"] == [boundaries[q, t : t + 2].tolist() for t in range(num_clips)]
        assert result["saliency"]["scores"] == cosine[q, :num_clips].tolist()


def test_bad_inputs_are_named():
    text, clips, spans = torch.randn(2, 4), torch.randn(2, 5, 4), torch.rand(2, 5, 2)
    with pytest.raises(ValueError, match="same Q queries"):
        zero_shot_grounding(text[:1], clips, spans)
    with pytest.raises(ValueError, match="clip_spans must be"):
        zero_shot_grounding(text, clips, spans[:, :4])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        zero_shot_grounding(text, clips, spans, top_k=0)
    with pytest.raises(ValueError, match="marks no clip"):
        zero_shot_moment_scores(torch.randn(2, 5), torch.zeros(2, 5))


@pytest.mark.parametrize("features", ["aligned", "random"])
def test_localization_measures_see_features_that_localize(monkeypatch, features):
    """Clip features that match a query exactly inside its moment score AUC 1 and find the moment; random ones score
    about chance. The encoders are replaced so that only the measures are under test."""
    generator = torch.Generator().manual_seed(0)
    num_queries, num_clips, dim, duration = 40, 16, 32, 32.0
    starts = torch.randint(0, 10, (num_queries,), generator=generator).double() * 2
    lengths = torch.randint(2, 6, (num_queries,), generator=generator).double() * 2
    queries = datasets.Dataset.from_dict({
        "video_id": [f"v{q}" for q in range(num_queries)], "query": [f"q{q}" for q in range(num_queries)],
        "start": starts.tolist(), "end": (starts + lengths).tolist(), "duration": [duration] * num_queries,
    })  # fmt: skip
    text = F.normalize(torch.randn(num_queries, dim, generator=generator), dim=-1)
    segments = torch.arange(num_clips) * duration / num_clips
    spans = torch.stack([segments + 0.9, segments + 1.1], dim=-1).repeat(num_queries, 1, 1)
    if features == "aligned":
        centres = spans.mean(-1)
        inside = (centres >= starts[:, None]) & (centres <= (starts + lengths)[:, None])
        elsewhere = F.normalize(torch.randn(num_queries, num_clips, dim, generator=generator), dim=-1)
        clips = torch.where(inside[..., None], text[:, None], elsewhere)
    else:
        clips = F.normalize(torch.randn(num_queries, num_clips, dim, generator=generator), dim=-1)
    monkeypatch.setattr(evaluation, "encode_videos", lambda *args, **kwargs: (None, clips, spans))
    monkeypatch.setattr(evaluation, "encode_texts", lambda *args, **kwargs: text)

    results = evaluation.localization_evaluation(None, None, queries, num_clips=num_clips, per_query=True)
    assert len(results["per_query"]["zero_shot_iou"]) == num_queries
    if features == "aligned":
        assert results["in_video_auc"] == 1.0 and results["probe_hit_rate"] == 1.0
        assert results["zero_shot_R@1,IoU=0.5"] > 0.9 and results["zero_shot_mIoU"] > 0.8
    else:
        assert 0.35 < results["in_video_auc"] < 0.65
        assert results["zero_shot_R@1,IoU=0.5"] < 0.5
    # the whole-video floor does not depend on the features
    assert results["zero_shot_whole_video_mIoU"] == pytest.approx((lengths / duration).mean().item())
