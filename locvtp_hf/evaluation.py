"""Zero-shot evaluation of LocVTP features: text-to-video retrieval and a clip localization probe."""

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .modeling_locvtp import LocVTPModel
from .processing_locvtp import LocVTPProcessor


@torch.no_grad()
def encode_videos(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    videos: Sequence,
    load_video: Callable | None = None,
    video_fps: float | None = None,
    num_clips: int | None = None,
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Encodes whole videos, with clips centred in `num_clips` (default: the processor's) equal segments.

    Returns:
        `(video_embeds [N, D], clip_embeds [N, T, D], clip_spans [N, T, 2])` on the CPU.
    """
    overrides = {"num_clips": num_clips} if num_clips is not None else {}
    video_embeds, clip_embeds, clip_spans = [], [], []
    for start in range(0, len(videos), batch_size):
        chunk = [load_video(video) if load_video else video for video in videos[start : start + batch_size]]
        inputs = processor.video_processor(chunk, video_fps=video_fps, return_tensors="pt", **overrides)
        pixels = inputs["pixel_values_videos"].to(model.device, model.dtype)
        out = model.get_video_features(pixels)
        video_embeds.append(out.pooler_output.float().cpu())
        clip_embeds.append(out.clip_embeds.float().cpu())
        clip_spans.append(inputs["clip_spans"])
    return torch.cat(video_embeds), torch.cat(clip_embeds), torch.cat(clip_spans)


@torch.no_grad()
def encode_texts(model: LocVTPModel, processor: LocVTPProcessor, texts: Sequence[str], batch_size: int = 128):
    """`[N, D]` sentence embeddings on the CPU."""
    embeds = []
    for start in range(0, len(texts), batch_size):
        inputs = processor(text=list(texts[start : start + batch_size]), return_tensors="pt").to(model.device)
        embeds.append(model.get_text_features(**inputs).pooler_output.float().cpu())
    return torch.cat(embeds)


def recall_at_k(similarity: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """
    Recall@k of each query row of `similarity` (`[Q, N]`) for its target column (`targets`, `[Q]`). Ties are broken
    against the target: a candidate scoring exactly the target's score ranks before it.
    """
    target_scores = similarity.gather(1, targets[:, None])
    ranks = (similarity >= target_scores).sum(1) - 1  # 0 = first
    return {f"R@{k}": (ranks < k).float().mean().item() for k in ks}


def text_to_video_retrieval(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    videos: Sequence,
    captions: Sequence[str],
    load_video: Callable | None = None,
    video_fps: float | None = None,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Each caption (one per video, same order) retrieves among all the videos by `<s, z>`."""
    video_embeds, _, _ = encode_videos(model, processor, list(videos), load_video, video_fps)
    text_embeds = encode_texts(model, processor, captions)
    recalls = recall_at_k(text_embeds @ video_embeds.T, torch.arange(len(videos)), ks)
    return {
        **{f"text_to_video_{name}": value for name, value in recalls.items()},
        **{f"text_to_video_R@{k}_chance": min(k / len(videos), 1.0) for k in ks},
    }


def localization_probe(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    queries,
    num_clips: int = 16,
    load_video: Callable | None = None,
    video_fps: float | None = None,
) -> dict[str, float]:
    """
    For each query (rows with `video_id`, `query`, `start`, `end`), the clip of its whole video whose embedding best
    matches the sentence: how often the clip's centre lies inside the annotated moment (`probe_hit_rate`), against
    the rate a clip drawn at random reaches (`probe_random_rate`).
    """
    video_ids = list(dict.fromkeys(queries["video_id"]))
    _, clip_embeds, clip_spans = encode_videos(model, processor, video_ids, load_video, video_fps, num_clips)
    text_embeds = encode_texts(model, processor, queries["query"])
    rows = torch.tensor([video_ids.index(video_id) for video_id in queries["video_id"]])
    scores = torch.einsum("qd,qtd->qt", text_embeds, clip_embeds[rows])
    centres = clip_spans[rows].mean(-1)
    starts = torch.tensor(np.asarray(queries["start"], dtype=np.float32))[:, None]
    ends = torch.tensor(np.asarray(queries["end"], dtype=np.float32))[:, None]
    inside = (centres >= starts) & (centres <= ends)
    hits = inside.gather(1, scores.argmax(1, keepdim=True))
    return {"probe_hit_rate": hits.float().mean().item(), "probe_random_rate": inside.float().mean().item()}
