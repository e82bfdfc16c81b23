"""The LocVTP losses: coarse video-sentence alignment, fine-grained clip-word alignment with correspondence discovery,
and the temporal-aware contrastive loss of the context projection head; and the fine-tuning losses of retrieval
and temporal grounding.

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
from torch.autograd.function import once_differentiable

from .configuration_locvtp import FINE_NEGATIVES
from .moment_geometry import temporal_iou


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
    return symmetric_infonce(logit_scale * video_embeds @ all_text.T, logit_scale * text_embeds @ all_video.T, offset)


def symmetric_infonce(logits_per_video: torch.Tensor, logits_per_text: torch.Tensor, offset: int) -> torch.Tensor:
    """
    Symmetric InfoNCE of this process's pairs against the global batch, averaged over the global batch.

    Args:
        logits_per_video (`[B, G]`): this process's videos against the texts of the global batch.
        logits_per_text (`[B, G]`): this process's texts against the videos of the global batch.
        offset: the positive of row `i` is column `offset + i` (this process's first row in the global batch).
    """
    labels = torch.arange(logits_per_video.shape[0], device=logits_per_video.device) + offset
    cross_entropy = F.cross_entropy(logits_per_video.float(), labels, reduction="sum") + F.cross_entropy(
        logits_per_text.float(), labels, reduction="sum"
    )
    return global_mean(cross_entropy / 2, logits_per_video.shape[0])


@torch.no_grad()
def discover_correspondence(
    clip_embeds: torch.Tensor,
    word_embeds: torch.Tensor,
    word_mask: torch.Tensor,
    topk_words: int,
    topk_clips: int,
    mutual: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Clip-word correspondence discovery inside each sample; no gradient flows through the choice.

    Args:
        clip_embeds (`[B, T, D]`): L2-normalised clip embeddings.
        word_embeds (`[B, L, D]`): L2-normalised word embeddings.
        word_mask (`[B, L]`, bool): The words discovery may pick: True for words, False for special tokens and
            padding (and for stop words, when they are excluded from discovery).
        topk_words (`int`): Positive words per clip.
        topk_clips (`int`): Positive clips per word.
        mutual (`bool`, *optional*, defaults to `False`): Keep only the pairs each side picked (clip `t` is among
            word `n`'s top clips and `n` among `t`'s top words), in both directions. A clip that no word picks back,
            such as a clip of a loosely aligned span that shows something the sentence does not mention, then has no
            positive and is no query.

    Returns:
        `(words_of_clip, clips_of_word)`, both `[B, T, L]` bool: `words_of_clip[b, t]` marks the `topk_words` most
        similar valid words of clip `(b, t)`; `clips_of_word[b, :, n]` marks the `topk_clips` most similar clips of
        word `(b, n)` (all False for padding and special tokens). With `mutual`, both are their intersection.
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
    if mutual:
        words_of_clip = clips_of_word = words_of_clip & clips_of_word
    return words_of_clip, clips_of_word


_CPU_CHUNK_LOGITS = 2**21


def multi_positive_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    key_mask: torch.Tensor,
    positives: torch.Tensor,
    offset: int,
    temperature: float,
    chunk_size: int | None = None,
    own_negatives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Multi-positive InfoNCE of each query against the keys of its own sample (positives) and of every other sample in
    the global batch (negatives). The non-positive keys of the query's own sample are left out of the denominator,
    unless `own_negatives` marks them: then those that are not positives of the query are negatives too (each key
    once, sampled without replacement), which asks for "this key rather than the sample's other keys".

    Only the queries that have a positive and the valid keys are scored, in one `[R, N]` matrix of logits built for
    the queries of `chunk_size` samples at a time (see `_OtherSampleLogSumExp`, which also computes the gradient in
    the same pass, so that each chunk is built once). Each row's entries of its own sample are dropped there; the
    own sample's part of the denominator (positives and own negatives) and the numerator come from the `[B, Q, K]`
    logits of each query against its own sample's keys.

    Args:
        queries (`[B, Q, D]`): this process's queries.
        keys (`[G, K, D]`): the keys of the global batch; sample `b` of this process is row `offset + b`.
        key_mask (`[G, K]`, bool): valid keys.
        positives (`[B, Q, K]`, bool): the positives of each query among its own sample's valid keys.
        chunk_size (`int`, *optional*): the most samples whose queries are scored at once (on a CPU, fewer when
            their logits would not stay in the cache, about `_CPU_CHUNK_LOGITS`); all of them when `None`.
        own_negatives (`[B, K]`, bool, *optional*): the keys of each query's own sample that are negatives when they
            are not among its positives. `None`: negatives come from the other samples only.

    Returns:
        `(loss_sum, num_valid)`: the sum of the losses of the queries that have a positive, and their number (a query
        without a positive has no loss).
    """
    batch_size = queries.shape[0]
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1 (or None for no chunking), got {chunk_size}.")
    key_mask = key_mask.bool()
    own_key_mask = key_mask[offset : offset + batch_size]
    if (positives & ~own_key_mask[:, None, :]).any():
        raise ValueError("Every positive of a query must be a valid key of its own sample (key_mask).")
    valid = positives.any(-1)
    own_logits = torch.einsum("bqd,bkd->bqk", queries, keys[offset : offset + batch_size]).float() / temperature
    own_logits = own_logits[valid]  # [R, K]
    positive_lse = own_logits.masked_fill(~positives[valid], float("-inf")).logsumexp(-1)
    if own_negatives is None:
        own_lse = positive_lse
    else:
        own_kept = positives | (own_negatives.bool() & own_key_mask)[:, None, :]
        own_lse = own_logits.masked_fill(~own_kept[valid], float("-inf")).logsumexp(-1)
    rows_per_sample, num_keys = valid.sum(-1), int(key_mask.sum())
    chunk_samples = chunk_size or max(batch_size, 1)
    if chunk_size is not None and queries.device.type == "cpu":
        # chunks of about _CPU_CHUNK_LOGITS stay in the cache: 1.5x faster than 4x larger ones on a 2-core machine
        logits_per_sample = max(int(rows_per_sample.sum()) * num_keys // max(batch_size, 1), 1)
        chunk_samples = min(chunk_samples, max(_CPU_CHUNK_LOGITS // logits_per_sample, 1))
    loss_sum = _OtherSampleLogSumExp.apply(
        queries[valid].float() / temperature,
        keys[key_mask].float(),
        positive_lse,
        own_lse,
        rows_per_sample,
        own_key_mask.sum(-1),
        int(key_mask[:offset].sum()),
        chunk_samples,
    )
    return loss_sum, valid.sum()


class _OtherSampleLogSumExp(torch.autograd.Function):
    """
    `sum_r [log(sum_{n of other samples} exp(<queries[r], keys[n]>) + exp(own_lse[r])) - shifts[r]]`, the log of
    each query's denominator (its own sample's keys enter only through `own_lse`) less `shifts`, and its gradient.

    The rows of `chunk_samples` samples are built at a time as `exp(logits - shifts)`, once: the gradient with respect
    to a row's logits is its softmax, complete as soon as the row is, so the forward pass also multiplies it into the
    gradients of the queries and keys (`[R, D]` and `[N, D]`, kept for the backward pass, which only scales them).
    Three matrix products and one `exp` per logit, no mask of the logits' size. The shift is the log-sum-exp of the
    row's positives, which are in its denominator: each row sums to at least 1, and overflows only where a logit
    exceeds the positives by about 80; such chunks are redone with each row's largest logit as the shift.
    """

    @staticmethod
    def forward(ctx, queries, keys, shifts, own_lse, rows_per_sample, keys_per_sample, first_column, chunk_samples):
        """
        Args:
            queries (`[R, D]`), keys (`[N, D]`): float32, the temperature already applied; the rows of each sample
                are consecutive, the keys of each sample too, as in the global batch.
            shifts (`[R]`), own_lse (`[R]`): see the class doc.
            rows_per_sample (`[B]`), keys_per_sample (`[B]`): the rows and keys of each of this process's samples.
            first_column (`int`): the first key of this process's first sample.
            chunk_samples (`int`): samples whose rows are built at once.
        """
        needs_grad = any(ctx.needs_input_grad[:4])
        if needs_grad:
            query_grad, key_grad, own_lse_grad = (torch.zeros_like(tensor) for tensor in (queries, keys, own_lse))
        row_starts = [0, *rows_per_sample.cumsum(0).tolist()]
        column_starts = [first_column + start for start in (0, *keys_per_sample.cumsum(0).tolist())]
        total = queries.new_zeros(())
        with torch.autocast(queries.device.type, enabled=False):
            for first in range(0, len(rows_per_sample), chunk_samples):
                last = min(first + chunk_samples, len(rows_per_sample))
                rows = slice(row_starts[first], row_starts[last])
                if rows.start == rows.stop:
                    continue
                own_columns = slice(column_starts[first], column_starts[last])
                samples = torch.arange(last - first, device=queries.device)
                own = (samples.repeat_interleave(rows_per_sample[first:last])[:, None]
                       == samples.repeat_interleave(keys_per_sample[first:last])[None, :])
                chunk_queries, shift = queries[rows], shifts[rows]
                exps = _exps_of_other_samples(chunk_queries, keys, shift, own, own_columns)
                own_exps = (own_lse[rows] - shift).exp()
                row_sums = exps.sum(-1) + own_exps
                if not torch.isfinite(row_sums).all():
                    logits = chunk_queries @ keys.T
                    logits[:, own_columns].masked_fill_(own, float("-inf"))
                    largest = torch.maximum(logits.amax(-1), own_lse[rows])
                    del logits
                    exps = _exps_of_other_samples(chunk_queries, keys, largest, own, own_columns)
                    own_exps = (own_lse[rows] - largest).exp()
                    row_sums = exps.sum(-1) + own_exps
                    total = total + (largest - shift).sum()
                total = total + row_sums.log().sum()
                if needs_grad:
                    query_grad[rows] = (exps @ keys).div_(row_sums[:, None])
                    key_grad.addmm_(exps.T, chunk_queries / row_sums[:, None])
                    own_lse_grad[rows] = own_exps / row_sums
        if needs_grad:
            ctx.save_for_backward(query_grad, key_grad, own_lse_grad)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        query_grad, key_grad, own_lse_grad = ctx.saved_tensors
        shift_grad = -grad_output.expand_as(own_lse_grad)
        return (grad_output * query_grad, grad_output * key_grad, shift_grad, grad_output * own_lse_grad,
                None, None, None, None)


def _exps_of_other_samples(queries, keys, shifts, own, own_columns):
    """`exp(queries @ keys.T - shifts[:, None])` (`[R, N]`), with zeros where `own` (`[R, own keys]`) marks a row's
    own sample among the keys `own_columns`."""
    exps = torch.addmm(-shifts[:, None], queries, keys.T).exp_()
    exps[:, own_columns].masked_fill_(own, 0.0)
    return exps


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
        clip_embeds (`[B, T, D]`): The clips of each video.

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
    """The weighted total and each term; a term whose weight is 0 is `None` (it was not computed). The temporal term
    is `(temporal_cross_modal_weight * temporal_cross_modal + temporal_intra_video_weight * temporal_intra_video) /
    2`: its two parts are given too, unweighted, to tell which of them moves."""

    loss: torch.Tensor
    coarse: torch.Tensor | None = None
    fine: torch.Tensor | None = None
    temporal: torch.Tensor | None = None
    temporal_cross_modal: torch.Tensor | None = None
    temporal_intra_video: torch.Tensor | None = None


class LocVTPLoss(nn.Module):
    """
    `L = w_coarse * L_coarse + w_fine * L_fine + w_temporal * L_temporal` over the global batch (see the module doc
    and `docs/method.md`). A term with weight 0 is skipped entirely.

    `chunk_size` bounds the memory of the clip-word and warp terms: their logits are built for at most `chunk_size`
    of this process's samples at a time against the whole global batch (`chunk_size * T x G * L`), once, with their
    gradient (see [`multi_positive_nce`]); `None` builds them for all samples at once.
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
        chunk_size: int | None = 64,
        fine_negatives: str = "other_samples",
        temporal_cross_modal_weight: float = 1.0,
        temporal_intra_video_weight: float = 1.0,
        discovery_mutual: bool = False,
    ):
        super().__init__()
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 (or None for no chunking), got {chunk_size}.")
        if fine_negatives not in FINE_NEGATIVES:
            raise ValueError(f"fine_negatives must be one of {FINE_NEGATIVES}, got {fine_negatives!r}.")
        if temporal_cross_modal_weight < 0 or temporal_intra_video_weight < 0 or (
            temporal_cross_modal_weight == temporal_intra_video_weight == 0
        ):
            raise ValueError(
                "The temporal term's two weights must be >= 0 and not both 0 (set temporal_weight to 0 to skip the "
                f"term), got {temporal_cross_modal_weight} and {temporal_intra_video_weight}."
            )
        self.coarse_weight = coarse_weight
        self.fine_weight = fine_weight
        self.temporal_weight = temporal_weight
        self.fine_temperature = fine_temperature
        self.fine_topk_words = fine_topk_words
        self.fine_topk_clips = fine_topk_clips
        self.context_window = context_window
        self.temporal_sigma = temporal_sigma
        self.temporal_temperature = temporal_temperature
        self.chunk_size = chunk_size
        self.fine_negatives = fine_negatives
        self.temporal_cross_modal_weight = temporal_cross_modal_weight
        self.temporal_intra_video_weight = temporal_intra_video_weight
        self.discovery_mutual = discovery_mutual

    # A compiled model (`torch.compile`, accelerate's `dynamo_backend`) runs the losses eagerly: the rows they score
    # (the queries with a positive, the valid words) change with every batch, so a traced graph would not carry over,
    # and their time is in matrix products and exponentials that compiling does not shorten.
    @torch.compiler.disable
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
        discovery_mask: torch.Tensor | None = None,
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
            discovery_mask (`[B, L]`, bool, *optional*): the words correspondence discovery may pick (a subset of
                `word_mask`, e.g. without stop words); all of `word_mask` when not given. Words outside it are still
                negatives of other samples' clips, but never positives, and never same-sample negatives.
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
            discovery_mask = word_mask if discovery_mask is None else discovery_mask.bool() & word_mask
            all_clips, offset = gather_with_grad(clip_embeds)
            all_words, _ = gather_with_grad(word_embeds)
            all_word_mask, _ = gather_with_grad(word_mask)
            words_of_clip, clips_of_word = discover_correspondence(
                clip_embeds,
                word_embeds,
                discovery_mask,
                self.fine_topk_words,
                self.fine_topk_clips,
                mutual=self.discovery_mutual,
            )
            # other processes may have padded their text further: align the positives with the gathered words
            padding = (0, all_words.shape[1] - word_embeds.shape[1])
            words_of_clip = F.pad(words_of_clip, padding)
            same_sample = self.fine_negatives == "same_and_other_samples"
            own_words = F.pad(discovery_mask, padding) if same_sample else None

            def against_words(queries: torch.Tensor) -> torch.Tensor:
                """Clip-like queries `[B, T, D]` against the words, the positives those discovered for each clip."""
                loss_sum, num_valid = multi_positive_nce(
                    queries,
                    all_words,
                    all_word_mask,
                    words_of_clip,
                    offset,
                    self.fine_temperature,
                    self.chunk_size,
                    own_negatives=own_words,
                )
                return global_mean(loss_sum, num_valid)

        if self.fine_weight > 0:
            clip_to_word = against_words(clip_embeds)
            clip_mask = clip_embeds.new_ones(clip_embeds.shape[:2], dtype=torch.bool)
            all_clip_mask, _ = gather_with_grad(clip_mask)
            clip_padding = all_clips.shape[1] - clip_embeds.shape[1]
            clips_of_word = F.pad(clips_of_word, (0, 0, 0, clip_padding))
            own_clips = F.pad(clip_mask, (0, clip_padding)) if same_sample else None
            word_loss_sum, num_valid_words = multi_positive_nce(
                word_embeds,
                all_clips,
                all_clip_mask,
                clips_of_word.transpose(1, 2),
                offset,
                self.fine_temperature,
                self.chunk_size,
                own_negatives=own_clips,
            )
            word_to_clip = global_mean(word_loss_sum, num_valid_words)
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
            elif context_offsets.shape != (batch_size, num_clips):
                raise ValueError(
                    f"context_offsets must hold one offset per clip, shape {(batch_size, num_clips)} (videos, clips), "
                    f"got {tuple(context_offsets.shape)}."
                )
            context_index = torch.arange(num_clips, device=clip_embeds.device)[None, :] + context_offsets
            if (context_index < 0).any() or (context_index >= num_clips).any():
                raise ValueError("context_offsets point outside the video's clips.")
            context = clip_embeds.gather(1, context_index[..., None].expand(-1, -1, dim))
            warped = context_head(context, -context_offsets)
            temporal = 0.0
            if self.temporal_cross_modal_weight > 0:
                terms["temporal_cross_modal"] = against_words(warped)
                temporal = self.temporal_cross_modal_weight * terms["temporal_cross_modal"]
            if self.temporal_intra_video_weight > 0:
                intra_losses = temporal_aware_intra_video_loss(
                    warped, clip_embeds, self.temporal_sigma, self.temporal_temperature
                )
                terms["temporal_intra_video"] = global_mean(intra_losses.sum(), intra_losses.numel())
                temporal = temporal + self.temporal_intra_video_weight * terms["temporal_intra_video"]
            terms["temporal"] = temporal / 2
            total = total + self.temporal_weight * terms["temporal"]

        return LocVTPLossOutput(loss=total, **terms)


def fine_grained_similarity(
    word_embeds: torch.Tensor, word_mask: torch.Tensor, clip_embeds: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """
    The fine-grained clip-word score of every text with every video: the mean over the video's clips of each clip's
    best similarity to a word of the text. A text without words scores 0.

    Args:
        word_embeds (`[Nt, L, D]`), word_mask (`[Nt, L]`, bool): L2-normalised word embeddings and the real words.
        clip_embeds (`[Nv, T, D]`): L2-normalised clip embeddings.
        chunk_size (`int`, *optional*): texts scored at once (the intermediate is `chunk_size x Nv x T x L`).

    Returns:
        `[Nt, Nv]` scores in [-1, 1].
    """
    word_mask = word_mask.bool()
    chunk_size = chunk_size or max(word_embeds.shape[0], 1)
    scores = []
    for start in range(0, word_embeds.shape[0], chunk_size):
        words, mask = word_embeds[start : start + chunk_size], word_mask[start : start + chunk_size]
        similarity = torch.einsum("nld,vtd->nvtl", words, clip_embeds)
        best = similarity.masked_fill(~mask[:, None, None, :], torch.finfo(similarity.dtype).min).amax(-1)
        scores.append(best.mean(-1).masked_fill(~mask.any(-1, keepdim=True), 0.0))
    return torch.cat(scores) if scores else word_embeds.new_zeros(0, clip_embeds.shape[0])


def retrieval_similarity(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    fusion_weight: float = 0.0,
    word_embeds: torch.Tensor | None = None,
    word_mask: torch.Tensor | None = None,
    clip_embeds: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """
    The text-video retrieval score `(1 - w) * <s, z> + w * fine` (unscaled), `w = fusion_weight`; `fine` is
    [`fine_grained_similarity`] and needs the word and clip embeddings when `w > 0`.

    Args:
        text_embeds (`[Nt, D]`), video_embeds (`[Nv, D]`): L2-normalised sentence and video embeddings.
        word_embeds (`[Nt, L, D]`), word_mask (`[Nt, L]`), clip_embeds (`[Nv, T, D]`): for the fine-grained score.

    Returns:
        `[Nt, Nv]` scores.
    """
    coarse = text_embeds @ video_embeds.T
    if fusion_weight == 0:
        return coarse
    if word_embeds is None or word_mask is None or clip_embeds is None:
        raise ValueError(
            f"A fusion weight of {fusion_weight} needs word_embeds, word_mask and clip_embeds for the fine-grained "
            "score."
        )
    fine = fine_grained_similarity(word_embeds, word_mask, clip_embeds, chunk_size)
    return (1 - fusion_weight) * coarse + fusion_weight * fine


def retrieval_contrastive_loss(
    text_embeds: torch.Tensor,
    video_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    fusion_weight: float = 0.0,
    word_embeds: torch.Tensor | None = None,
    word_mask: torch.Tensor | None = None,
    clip_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Symmetric InfoNCE of the paired texts and videos of the global batch on the scaled retrieval score
    `logit_scale * retrieval_similarity(...)`; with `fusion_weight == 0` it is [`coarse_alignment_loss`].

    Args:
        text_embeds (`[B, D]`), video_embeds (`[B, D]`): this process's pairs, L2-normalised.
        logit_scale: the (already exponentiated) scale.
        fusion_weight, word_embeds (`[B, L, D]`), word_mask (`[B, L]`), clip_embeds (`[B, T, D]`): see
            [`retrieval_similarity`].
    """
    if fusion_weight == 0:
        return coarse_alignment_loss(video_embeds, text_embeds, logit_scale)
    if word_embeds is None or word_mask is None or clip_embeds is None:
        raise ValueError(f"A fusion weight of {fusion_weight} needs word_embeds, word_mask and clip_embeds.")
    all_video, offset = gather_with_grad(video_embeds)
    all_text, _ = gather_with_grad(text_embeds)
    all_clips, _ = gather_with_grad(clip_embeds)
    all_words, _ = gather_with_grad(word_embeds)
    all_word_mask, _ = gather_with_grad(word_mask.bool())
    logits_per_text = logit_scale * retrieval_similarity(
        text_embeds, all_video, fusion_weight, word_embeds, word_mask, all_clips
    )
    logits_per_video = logit_scale * retrieval_similarity(
        all_text, video_embeds, fusion_weight, all_words, all_word_mask, clip_embeds
    ).T
    return symmetric_infonce(logits_per_video, logits_per_text, offset)


def temporal_grounding_loss(
    logits: torch.Tensor,
    candidate_moments: torch.Tensor,
    target_moments: torch.Tensor,
    iou_min: float,
    iou_max: float,
) -> torch.Tensor:
    """
    2D-TAN's loss: binary cross-entropy of every candidate moment's score against its (hull) IoU with the target
    moment, the IoU scaled from `[iou_min, iou_max]` to `[0, 1]` (clamped), averaged over the candidates of the batch.

    Args:
        logits (`[B, K]`): the score logit of each of the `K` candidate moments of each query.
        candidate_moments (`[B, K, 2]`): their `(start, end)`.
        target_moments (`[B, 2]`): the ground-truth `(start, end)` of each query, in the same unit.
        iou_min, iou_max (`float`): IoUs at or below `iou_min` are a target of 0, at or above `iou_max` of 1.

    Returns:
        `torch.Tensor` of shape `()`.
    """
    iou = temporal_iou(candidate_moments, target_moments[:, None, :])[..., 0]
    scaled_iou = ((iou - iou_min) / (iou_max - iou_min)).clamp(0, 1)
    return F.binary_cross_entropy_with_logits(logits, scaled_iou.to(logits.dtype))


def saliency_loss(logits: torch.Tensor, labels: torch.Tensor, clip_mask: torch.Tensor) -> torch.Tensor:
    """
    The saliency loss of [`LocVTPForTemporalGrounding`]: binary cross-entropy of each clip's saliency logit against
    its soft target in `[0, 1]`, averaged over the labelled real clips of the batch (padded clips and NaN targets, "no
    label", are left out).

    Moment-DETR trains its saliency scores with hinge ranking losses instead (a clip inside the moment above one
    outside it, and above a clip of another video, by a margin), UniVTG with a contrastive loss over the clips; both
    need only an order. Soft targets (QVHighlights' annotator scores, or how much of a clip the event covers) carry
    more than an order, a per-clip BCE uses all of them, and its sigmoid scores are comparable across videos.

    Args:
        logits (`[B, C]`): each clip's saliency logit (any value at padded clips, `-inf` included).
        labels (`[B, C]`): targets in `[0, 1]`, NaN for a clip without a label.
        clip_mask (`[B, C]`, bool): True for real clips.

    Returns:
        `torch.Tensor` of shape `()`; 0 (still attached to `logits`, so every parameter gets a gradient) when no
        clip of the batch is labelled.
    """
    labelled = clip_mask.bool() & ~torch.isnan(labels)
    if not labelled.any():
        return logits.masked_fill(~labelled, 0).sum() * 0
    return F.binary_cross_entropy_with_logits(logits[labelled], labels[labelled].to(logits.dtype))
