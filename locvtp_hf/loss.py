"""The LocVTP losses: coarse video-sentence alignment, fine-grained clip-word alignment with correspondence discovery,
and the temporal-aware contrastive loss of the context projection head.

Every contrastive term runs over the *global* batch: the embeddings of all processes are gathered with gradients and
each process scores its own rows against every column, as open_clip's `ClipLoss(local_loss=True,
gather_with_grad=True)` does. Each term is a sum over this process's rows divided by the global number of rows and
multiplied by the world size, so the mean of the per-process losses is exactly the loss of the whole batch on one
process, and the gradients that DDP averages are exactly its gradients.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """`all_gather` along dim 0 that sends gradients back to every process's input."""
    import torch.distributed._functional_collectives as collectives

    if hasattr(collectives, "all_gather_single_autograd"):
        return collectives.all_gather_single_autograd(tensor.contiguous(), 0, dist.group.WORLD)
    from torch.distributed.nn.functional import all_gather  # torch < 2.6

    return torch.cat(all_gather(tensor.contiguous()))


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """
    Concatenates `tensor` (`[B_r, ...]`) of every process along dim 0, keeping the autograd graph.

    Processes may hold different batch sizes and different sizes in the other dimensions (e.g. text padded to
    different lengths): every dimension after the first is zero-padded to the largest size, so a boolean mask gathered
    the same way marks the padding as invalid.

    Returns:
        `(gathered, offset)`: the `[sum_r B_r, ...]` tensor and the index of this process's first row in it.
    """
    world_size = _world_size()
    if world_size == 1:
        return tensor, 0
    shape = torch.tensor(tensor.shape, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size)]
    dist.all_gather(shapes, shape)
    shapes = torch.stack(shapes).tolist()
    max_shape = [max(sizes) for sizes in zip(*shapes)]
    padding = []
    for size, max_size in zip(reversed(tensor.shape), reversed(max_shape)):
        padding += [0, max_size - size]
    padded = F.pad(tensor, padding) if tensor.dtype != torch.bool else F.pad(tensor.long(), padding).bool()
    gathered = _all_gather_with_grad(padded).split(max_shape[0])
    rank = dist.get_rank()
    offset = sum(rank_shape[0] for rank_shape in shapes[:rank])
    return torch.cat([chunk[: rank_shape[0]] for chunk, rank_shape in zip(gathered, shapes)]), offset


def global_mean(local_sum: torch.Tensor, local_count: torch.Tensor | int) -> torch.Tensor:
    """`local_sum` divided by the number of rows of the whole global batch, times the world size (see module doc)."""
    world_size = _world_size()
    count = torch.as_tensor(local_count, dtype=torch.float32, device=local_sum.device)
    if world_size > 1:
        count = count.clone()
        dist.all_reduce(count)
    return local_sum * world_size / count.clamp(min=1)


def coarse_alignment_loss(
    video_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """
    Symmetric InfoNCE between videos and sentences.

    Args:
        video_embeds (`[B, D]`), text_embeds (`[B, D]`): L2-normalised embeddings of this process.
        logit_scale: the (already exponentiated) scale `exp(alpha)`.
    """
    all_video, offset = gather_with_grad(video_embeds)
    all_text, _ = gather_with_grad(text_embeds)
    labels = torch.arange(video_embeds.shape[0], device=video_embeds.device) + offset
    logits_per_video = logit_scale * video_embeds @ all_text.T
    logits_per_text = logit_scale * text_embeds @ all_video.T
    cross_entropy = F.cross_entropy(logits_per_video.float(), labels, reduction="sum") + F.cross_entropy(
        logits_per_text.float(), labels, reduction="sum"
    )
    return global_mean(cross_entropy / 2, video_embeds.shape[0])


@torch.no_grad()
def discover_correspondence(
    clip_embeds: torch.Tensor, word_embeds: torch.Tensor, word_mask: torch.Tensor, topk_words: int, topk_clips: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Clip-word correspondence discovery inside each sample; no gradient flows through the choice.

    Args:
        clip_embeds (`[B, T, D]`), word_embeds (`[B, L, D]`), word_mask (`[B, L]`, bool).

    Returns:
        `(words_of_clip, clips_of_word)`, both `[B, T, L]` bool: `words_of_clip[b, t]` marks the `topk_words` most
        similar valid words of clip `(b, t)`; `clips_of_word[b, :, n]` marks the `topk_clips` most similar clips of
        word `(b, n)` (all False for padding and special tokens).
    """
    similarity = torch.einsum("btd,bld->btl", clip_embeds, word_embeds).float()
    valid = word_mask[:, None, :]
    masked = similarity.masked_fill(~valid, float("-inf"))
    top_words = masked.topk(min(topk_words, masked.shape[-1]), dim=-1).indices
    # A sample with fewer valid words than `topk_words` may pick padding; the final `& valid` drops it.
    no_choice = torch.zeros(similarity.shape, dtype=torch.bool, device=similarity.device)
    words_of_clip = no_choice.scatter(-1, top_words, True) & valid
    top_clips = similarity.topk(min(topk_clips, similarity.shape[1]), dim=1).indices
    clips_of_word = no_choice.scatter(1, top_clips, True) & valid
    return words_of_clip, clips_of_word


def multi_positive_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_mask: torch.Tensor,
    positives: torch.Tensor,
    offset: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Multi-positive InfoNCE of each query against the keys of its own sample (positives) and of every other sample in
    the global batch (negatives). The non-positive keys of the query's own sample are left out of the denominator.

    Args:
        queries (`[B, Q, D]`): this process's queries.
        keys (`[G, K, D]`): the keys of the global batch; sample `b` of this process is row `offset + b`.
        key_mask (`[G, K]`, bool): valid keys.
        positives (`[B, Q, K]`, bool): the positives of each query among its own sample's keys.

    Returns:
        `(losses, valid)`, both `[B, Q]`: the loss of each query (0 where it has no positive) and whether it has one.
    """
    batch_size = queries.shape[0]
    own = torch.arange(batch_size, device=queries.device) + offset
    logits = torch.einsum("bqd,gkd->bqgk", queries, keys).float() / temperature
    fill = torch.finfo(logits.dtype).min  # finite, so that queries without positives get zero (not NaN) gradients
    own_logits = logits[torch.arange(batch_size, device=queries.device), :, own]  # [B, Q, K]
    positive_logits = own_logits.masked_fill(~positives, fill)
    is_other = torch.ones(batch_size, keys.shape[0], dtype=torch.bool, device=queries.device)
    is_other[torch.arange(batch_size, device=queries.device), own] = False
    negatives = key_mask[None, :, :] & is_other[:, :, None]  # [B, G, K]
    negative_logits = logits.masked_fill(~negatives[:, None], fill).flatten(2)
    numerator = positive_logits.logsumexp(-1)
    denominator = torch.cat([positive_logits, negative_logits], dim=-1).logsumexp(-1)
    valid = positives.any(-1)
    return (denominator - numerator).masked_fill(~valid, 0.0), valid


def sample_context_offsets(
    batch_size: int, num_clips: int, context_window: int, device=None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """
    Draws one signed offset `delta` per reference clip, uniformly from `[-W, W] \\ {0}` with `0 <= t + delta < T`.

    Returns:
        `[B, T]` long tensor.
    """
    if num_clips < 2:
        raise ValueError(f"The temporal loss needs at least 2 clips per video, got {num_clips}.")
    candidates = torch.cat([torch.arange(-context_window, 0), torch.arange(1, context_window + 1)]).to(device)
    positions = torch.arange(num_clips, device=device)[:, None] + candidates[None, :]
    allowed = (positions >= 0) & (positions < num_clips)  # [T, 2W]
    scores = torch.rand(batch_size, num_clips, len(candidates), generator=generator, device=device)
    choice = scores.masked_fill(~allowed, -1.0).argmax(-1)
    return candidates[choice]


def temporal_aware_intra_video_loss(
    warped: torch.Tensor, clip_embeds: torch.Tensor, sigma: float, temperature: float
) -> torch.Tensor:
    """
    Each warped context feature must pick its reference clip among the `T` clips of its own video; clip `t'` enters
    the denominator of reference `t` with weight `1 - exp(-(t' - t)^2 / (2 sigma^2))`.

    Args:
        warped (`[B, T, D]`): `warped[b, t]` is the context feature warped to position `t`.
        clip_embeds (`[B, T, D]`).

    Returns:
        `[B, T]` losses.
    """
    num_clips = clip_embeds.shape[1]
    logits = torch.einsum("btd,bsd->bts", warped, clip_embeds).float() / temperature
    positions = torch.arange(num_clips, device=clip_embeds.device, dtype=torch.float32)
    distance = positions[None, :] - positions[:, None]
    weights = 1 - torch.exp(-distance.square() / (2 * sigma**2))
    weights.fill_diagonal_(1.0)
    denominator = (logits + weights.log()).logsumexp(-1)
    return denominator - logits.diagonal(dim1=1, dim2=2)


@dataclass
class LocVTPLossOutput:
    """The weighted total and each term; a term whose weight is 0 is `None` (it was not computed)."""

    loss: torch.Tensor
    coarse: torch.Tensor | None = None
    fine: torch.Tensor | None = None
    temporal: torch.Tensor | None = None


class LocVTPLoss(nn.Module):
    """
    `L = w_coarse * L_coarse + w_fine * L_fine + w_temporal * L_temporal` over the global batch (see the module doc
    and `docs/method.md`). A term with weight 0 is skipped entirely.
    """

    def __init__(
        self,
        coarse_weight: float = 1.0,
        fine_weight: float = 1.0,
        temporal_weight: float = 1.0,
        fine_temperature: float = 0.07,
        fine_topk_words: int = 1,
        fine_topk_clips: int = 1,
        context_window: int = 2,
        temporal_sigma: float = 1.0,
        temporal_temperature: float = 0.07,
    ):
        super().__init__()
        self.coarse_weight = coarse_weight
        self.fine_weight = fine_weight
        self.temporal_weight = temporal_weight
        self.fine_temperature = fine_temperature
        self.fine_topk_words = fine_topk_words
        self.fine_topk_clips = fine_topk_clips
        self.context_window = context_window
        self.temporal_sigma = temporal_sigma
        self.temporal_temperature = temporal_temperature

    def forward(
        self,
        clip_embeds: torch.Tensor,
        video_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        word_embeds: torch.Tensor,
        word_mask: torch.Tensor,
        logit_scale: torch.Tensor,
        context_head: nn.Module | None = None,
        context_offsets: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> LocVTPLossOutput:
        """
        Args:
            clip_embeds (`[B, T, D]`), video_embeds (`[B, D]`), text_embeds (`[B, D]`), word_embeds (`[B, L, D]`):
                L2-normalised embeddings of this process's samples.
            word_mask (`[B, L]`, bool): which word embeddings are real words (not special tokens, not padding).
            logit_scale: `exp(alpha)` of the coarse loss.
            context_head: `g(x, delta)`, needed when the temporal weight is positive.
            context_offsets (`[B, T]`, *optional*): the offset `delta` drawn for each reference clip; drawn with
                `generator` when not given.
        """
        if self.coarse_weight == self.fine_weight == self.temporal_weight == 0:
            raise ValueError("Every loss weight is 0: set coarse, fine or temporal loss weight above 0 to train.")
        total = 0.0
        terms = {}
        if self.coarse_weight > 0:
            terms["coarse"] = coarse_alignment_loss(video_embeds, text_embeds, logit_scale)
            total = total + self.coarse_weight * terms["coarse"]

        if self.fine_weight > 0 or self.temporal_weight > 0:
            word_mask = word_mask.bool()
            all_clips, offset = gather_with_grad(clip_embeds)
            all_words, _ = gather_with_grad(word_embeds)
            all_word_mask, _ = gather_with_grad(word_mask)
            words_of_clip, clips_of_word = discover_correspondence(
                clip_embeds, word_embeds, word_mask, self.fine_topk_words, self.fine_topk_clips
            )
            # other processes may have padded their text further: align the positives with the gathered words
            words_of_clip = F.pad(words_of_clip, (0, all_words.shape[1] - word_embeds.shape[1]))

        if self.fine_weight > 0:
            clip_losses, clip_valid = multi_positive_nce(
                clip_embeds, all_words, all_word_mask, words_of_clip, offset, self.fine_temperature
            )
            all_clip_mask, _ = gather_with_grad(clip_embeds.new_ones(clip_embeds.shape[:2], dtype=torch.bool))
            clips_of_word = F.pad(clips_of_word, (0, 0, 0, all_clips.shape[1] - clip_embeds.shape[1]))
            word_losses, word_valid = multi_positive_nce(
                word_embeds, all_clips, all_clip_mask, clips_of_word.transpose(1, 2), offset, self.fine_temperature
            )
            clip_to_word = global_mean(clip_losses.sum(), clip_valid.sum())
            word_to_clip = global_mean(word_losses.sum(), word_valid.sum())
            terms["fine"] = (clip_to_word + word_to_clip) / 2
            total = total + self.fine_weight * terms["fine"]

        if self.temporal_weight > 0:
            if context_head is None:
                raise ValueError("The temporal loss needs the context projection head.")
            batch_size, num_clips, dim = clip_embeds.shape
            if context_offsets is None:
                context_offsets = sample_context_offsets(
                    batch_size, num_clips, self.context_window, clip_embeds.device, generator
                )
            context_index = torch.arange(num_clips, device=clip_embeds.device)[None, :] + context_offsets
            if (context_index < 0).any() or (context_index >= num_clips).any():
                raise ValueError("context_offsets point outside the video's clips.")
            context = clip_embeds.gather(1, context_index[..., None].expand(-1, -1, dim))
            warped = context_head(context, -context_offsets)
            warp_losses, warp_valid = multi_positive_nce(
                warped, all_words, all_word_mask, words_of_clip, offset, self.fine_temperature
            )
            intra_losses = temporal_aware_intra_video_loss(
                warped, clip_embeds, self.temporal_sigma, self.temporal_temperature
            )
            cross_modal_warp = global_mean(warp_losses.sum(), warp_valid.sum())
            intra_video = global_mean(intra_losses.sum(), intra_losses.numel())
            terms["temporal"] = (cross_modal_warp + intra_video) / 2
            total = total + self.temporal_weight * terms["temporal"]

        return LocVTPLossOutput(loss=total, **terms)
