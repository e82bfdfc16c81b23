"""Evaluation of LocVTP features: text-video retrieval (zero-shot or fine-tuned) and head-free localization measures."""

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .encoding import encode_texts, encode_videos
from .modeling_locvtp import LocVTPForRetrieval, LocVTPModel
from .moment_geometry import temporal_iou
from .processing_locvtp import LocVTPProcessor
from .retrieval_datasets import flatten_captions
from .retrieval_metrics import rank_metrics, retrieval_ranks, text_video_retrieval_metrics
from .zero_shot_grounding import zero_shot_grounding


def text_to_video_retrieval(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    videos: Sequence,
    captions: Sequence[str],
    load_video: Callable | None = None,
    video_fps: float | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """
    Each caption (one per video, same order) retrieves among all the videos by `<s, z>`: R@k with their chance rates
    (ties as in [`~retrieval_metrics.retrieval_ranks`]).
    """
    video_embeds, _, _ = encode_videos(model, processor, list(videos), load_video, video_fps)
    text_embeds = encode_texts(model, processor, captions)
    ranks = retrieval_ranks(text_embeds @ video_embeds.T, torch.eye(len(videos), dtype=torch.bool))
    recalls = {name: value for name, value in rank_metrics(ranks, ks).items() if name.startswith("R@")}
    return {
        **{f"text_to_video_{name}": value for name, value in recalls.items()},
        **{f"text_to_video_R@{k}_chance": min(k / len(videos), 1.0) for k in ks},
    }


def retrieval_evaluation(
    model: LocVTPForRetrieval | LocVTPModel,
    processor: LocVTPProcessor,
    dataset,
    load_video: Callable | None = None,
    video_fps: float | None = None,
    batch_size: int = 16,
    ks: Sequence[int] = (1, 5, 10),
    renormalization: str | None = None,
    temperature: float = 0.01,
    num_workers: int = 0,
    progress_bar: bool = False,
    skip_unreadable: bool = False,
):
    """
    Text-to-video and video-to-text retrieval over a retrieval set (rows `video`, `captions`; see
    `locvtp_hf.retrieval_datasets`): every caption against every video, scored as the model scores them (a
    [`LocVTPForRetrieval`] fuses the fine-grained score when its `retrieval_fusion_weight` is positive; a
    [`LocVTPModel`] uses `<s, z>`). Videos are encoded with centred clips, `batch_size` at a time, decoded by
    `num_workers` DataLoader workers (see [`~encoding.encode_videos`], also for `progress_bar`).

    With `skip_unreadable`, the videos that cannot be read are left out together with their captions, and the
    evaluation runs on the others (`num_videos` and `num_texts` count what was evaluated).

    Returns:
        The metrics of [`~retrieval_metrics.text_video_retrieval_metrics`]; with `skip_unreadable`, `(metrics,
        unreadable)` with the list of [`~encoding.UnreadableVideo`] (indices are rows of `dataset`).
    """
    was_training = model.training
    model.eval()
    encoded = encode_videos(
        model,
        processor,
        list(dataset["video"]),
        load_video,
        video_fps,
        batch_size=batch_size,
        num_workers=num_workers,
        progress_bar=progress_bar,
        skip_unreadable=skip_unreadable,
    )
    video_embeds, clip_embeds = encoded[:2]
    unreadable = encoded[3] if skip_unreadable else []
    if unreadable:
        left_out = {video.index for video in unreadable}
        dataset = dataset.select([row for row in range(len(dataset)) if row not in left_out])
    captions, text_to_video = flatten_captions(dataset)
    if isinstance(model, LocVTPForRetrieval) and model.config.retrieval_fusion_weight > 0:
        text_embeds, word_embeds, word_mask = encode_texts(model, processor, captions, return_words=True)
        similarity = model.similarity(text_embeds, video_embeds, word_embeds, word_mask, clip_embeds, chunk_size=64)
    else:
        similarity = encode_texts(model, processor, captions) @ video_embeds.T
    model.train(was_training)
    metrics = text_video_retrieval_metrics(similarity, text_to_video, ks, renormalization, temperature)
    return (metrics, unreadable) if skip_unreadable else metrics


def localization_evaluation(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    queries,
    num_clips: int = 16,
    load_video: Callable | None = None,
    video_fps: float | None = None,
    per_query: bool = False,
) -> dict:
    """
    Head-free localization measures of the clip features: each query's whole video is cut into `num_clips` equal
    segments with a clip centred in each, and the query's sentence embedding is compared with every clip. Nothing is
    trained, so the figures see the encoder, not a head.

    - `probe_hit_rate`: the best-matching clip's centre lies inside the moment; `probe_random_rate`: how often a clip
      drawn at random does.
    - `in_video_auc`: the chance that a clip inside the moment matches the sentence better than a clip outside it, in
      the same video (ties count half; 0.5 is chance), averaged over the queries with clips on both sides.
    - `zero_shot_R@1,IoU=m` (m = 0.3, 0.5, 0.7) and `zero_shot_mIoU`: the top moment of
      [`~locvtp_hf.zero_shot_grounding.zero_shot_grounding`]; `zero_shot_random_...`: the same figures for the
      same search over random clip features (its chance level); `zero_shot_whole_video_...`: when the whole video
      answers every query.

    Args:
        queries: rows with `video_id`, `query`, `start`, `end` and `duration` (seconds), e.g.
            `SyntheticWorld.grounding_queries(split)`.
        per_query (`bool`): also return `per_query`, a dict of lists with one value per query (`probe_hit`,
            `in_video_auc` (`NaN` where undefined), `zero_shot_iou`), for paired or bootstrap comparisons.
    """
    video_ids = list(dict.fromkeys(queries["video_id"]))
    _, clip_embeds, clip_spans = encode_videos(model, processor, video_ids, load_video, video_fps, num_clips)
    text_embeds = encode_texts(model, processor, queries["query"])
    rows = torch.tensor([video_ids.index(video_id) for video_id in queries["video_id"]])
    clip_embeds, clip_spans = clip_embeds[rows], clip_spans[rows]
    scores = torch.einsum("qd,qtd->qt", text_embeds, clip_embeds)
    starts, ends, durations = (
        torch.tensor(np.asarray(queries[name], dtype=np.float64)) for name in ("start", "end", "duration")
    )
    centres = clip_spans.to(torch.float64).mean(-1)
    inside = (centres >= starts[:, None]) & (centres <= ends[:, None])

    probe_hits = inside.gather(1, scores.argmax(1, keepdim=True))[:, 0].float()
    # AUC = P(inside > outside) + P(tie) / 2 over the (inside, outside) pairs of clips of the query's video
    pairs = inside[:, :, None] & ~inside[:, None, :]
    differences = scores[:, :, None] - scores[:, None, :]
    wins = (differences > 0).float() + (differences == 0).float() / 2
    num_pairs = pairs.sum((1, 2))
    auc = torch.where(num_pairs > 0, (wins * pairs).sum((1, 2)) / num_pairs.clamp(min=1), torch.nan)

    def top_moments(clips: torch.Tensor) -> torch.Tensor:
        moments = zero_shot_grounding(text_embeds, clips, clip_spans, video_durations=durations, top_k=1)
        return torch.tensor([[found[0]["start"], found[0]["end"]] for found in moments], dtype=torch.float64)

    # the chance level of the scorer: the same search over clip features that know nothing (random directions)
    noise = torch.randn(clip_embeds.shape, generator=torch.Generator().manual_seed(0))
    truth = torch.stack([starts, ends], dim=-1)
    answers_by_name = {
        "zero_shot": top_moments(clip_embeds),
        "zero_shot_random": top_moments(F.normalize(noise, dim=-1)),
        "zero_shot_whole_video": torch.stack([torch.zeros_like(durations), durations], dim=-1),
    }
    results = {
        "probe_hit_rate": probe_hits.mean().item(),
        "probe_random_rate": inside.float().mean().item(),
        "in_video_auc": auc.nanmean().item(),
    }
    for name, answers in answers_by_name.items():
        iou = temporal_iou(answers[:, None], truth[:, None])[:, 0, 0]
        for threshold in (0.3, 0.5, 0.7):
            results[f"{name}_R@1,IoU={threshold}"] = (iou >= threshold).double().mean().item()
        results[f"{name}_mIoU"] = iou.mean().item()
        if name == "zero_shot" and per_query:
            results["per_query"] = {
                "probe_hit": probe_hits.tolist(),
                "in_video_auc": auc.tolist(),
                "zero_shot_iou": iou.tolist(),
            }
    return results
