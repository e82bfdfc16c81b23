"""The LocVTP losses against straightforward loop implementations of the method doc's formulas, on hand-built
cases, on learnable data, and across two processes."""

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from testing_utils import make_config, random_batch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from benchmark_utils import peak_memory  # noqa: E402

import locvtp_hf.loss  # noqa: E402
from locvtp_hf import LocVTPLoss  # noqa: E402
from locvtp_hf.loss import discover_correspondence, multi_positive_nce, sample_context_offsets  # noqa: E402
from locvtp_hf.modeling_locvtp import LocVTPContextProjectionHead, LocVTPForPreTraining  # noqa: E402


TAU = 0.07


def _embeddings(batch_size=4, num_clips=5, length=6, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clips = F.normalize(torch.randn(batch_size, num_clips, dim, generator=generator), dim=-1)
    words = F.normalize(torch.randn(batch_size, length, dim, generator=generator), dim=-1)
    mask = torch.ones(batch_size, length, dtype=torch.bool)
    for b in range(batch_size):  # samples of different lengths: padding at the end
        mask[b, length - b % 3 :] = False
    words = words * mask[..., None]
    texts = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=-1)
    videos = F.normalize(clips.mean(1), dim=-1)
    return clips, videos, texts, words, mask


def _reference_infonce(query, positives, negatives, tau):
    numerator = sum(math.exp(float(query @ key) / tau) for key in positives)
    denominator = numerator + sum(math.exp(float(query @ key) / tau) for key in negatives)
    return -math.log(numerator / denominator)


def _top_words(clips, words, valid, b, t, topk):
    return sorted(valid, key=lambda n: -float(clips[b, t] @ words[b, n]))[:topk]


def _top_clips(clips, words, b, n, topk):
    return sorted(range(clips.shape[1]), key=lambda t: -float(clips[b, t] @ words[b, n]))[:topk]


def _reference_clip_to_word(queries, clips, words, mask, topk, tau, same_sample=False, discoverable=None,
                            mutual=False):
    """queries[b][t] against the words discovered for clip (b, t): the method doc's L_c2w, one term at a time.
    `discoverable`: the words discovery may pick; `same_sample`: its other discoverable words are negatives too;
    `mutual`: a word is a positive of clip t only if t is also among the word's top clips (no positive, no term)."""
    discoverable = mask if discoverable is None else discoverable & mask
    batch_size, num_clips = clips.shape[:2]
    losses = []
    for b in range(batch_size):
        valid = [n for n in range(words.shape[1]) if discoverable[b, n]]
        others = [words[c, n] for c in range(batch_size) if c != b for n in range(words.shape[1]) if mask[c, n]]
        for t in range(num_clips):
            ranked = _top_words(clips, words, valid, b, t, topk)
            if mutual:
                ranked = [n for n in ranked if t in _top_clips(clips, words, b, n, topk)]
            if not ranked:
                continue
            own = [words[b, n] for n in valid if n not in ranked] if same_sample else []
            losses.append(_reference_infonce(queries[b][t], [words[b, n] for n in ranked], others + own, tau))
    return sum(losses) / len(losses)


def _reference_word_to_clip(clips, words, mask, topk, tau, same_sample=False, discoverable=None, mutual=False):
    discoverable = mask if discoverable is None else discoverable & mask
    batch_size, num_clips = clips.shape[:2]
    losses = []
    for b in range(batch_size):
        valid = [n for n in range(words.shape[1]) if discoverable[b, n]]
        others = [clips[c, t] for c in range(batch_size) if c != b for t in range(num_clips)]
        for n in valid:
            ranked = _top_clips(clips, words, b, n, topk)
            if mutual:
                ranked = [t for t in ranked if n in _top_words(clips, words, valid, b, t, topk)]
            if not ranked:
                continue
            own = [clips[b, t] for t in range(num_clips) if t not in ranked] if same_sample else []
            losses.append(_reference_infonce(words[b, n], [clips[b, t] for t in ranked], others + own, tau))
    return sum(losses) / len(losses)


def _reference_intra(warped, clips, sigma, tau):
    batch_size, num_clips = clips.shape[:2]
    losses = []
    for b in range(batch_size):
        for t in range(num_clips):
            positive = math.exp(float(warped[b][t] @ clips[b, t]) / tau)
            negatives = sum(
                (1 - math.exp(-((s - t) ** 2) / (2 * sigma**2))) * math.exp(float(warped[b][t] @ clips[b, s]) / tau)
                for s in range(num_clips)
                if s != t
            )
            losses.append(-math.log(positive / (positive + negatives)))
    return sum(losses) / len(losses)


def _assert_fine_and_temporal_match_the_formulas(out, clips, words, mask, head, offsets, topk, **options):
    """`out.fine` and `out.temporal` (intra-video sigma 1) against the loop references, `options` of the fine term."""
    fine = (_reference_clip_to_word(clips, clips, words, mask, topk, TAU, **options)
            + _reference_word_to_clip(clips, words, mask, topk, TAU, **options)) / 2
    assert out.fine.item() == pytest.approx(fine, rel=1e-4)
    batch_size, num_clips = clips.shape[:2]
    with torch.no_grad():
        warped = [[head(clips[b, t + offsets[b, t]], -offsets[b, t]) for t in range(num_clips)]
                  for b in range(batch_size)]
    warp = _reference_clip_to_word(warped, clips, words, mask, topk, TAU, **options)
    intra = _reference_intra(warped, clips, sigma=1.0, tau=TAU)
    assert out.temporal.item() == pytest.approx((warp + intra) / 2, rel=1e-4)


def test_context_offsets_must_give_one_offset_per_clip():
    clips, videos, texts, words, mask = _embeddings()
    head = LocVTPContextProjectionHead(make_config(projection_dim=8, context_window=2))
    offsets = sample_context_offsets(4, 4, 2, generator=torch.Generator().manual_seed(1))  # 4 clips, not 5
    loss_fn, scale = LocVTPLoss(), torch.tensor(1 / TAU)
    with pytest.raises(ValueError, match=r"one offset per clip, shape \(4, 5\) \(videos, clips\), got \(4, 4\)"):
        loss_fn(clips, videos, texts, words, mask, scale, context_head=head, context_offsets=offsets)


@pytest.mark.parametrize("topk", [1, 2])
def test_losses_match_the_method_formulas(topk):
    clips, videos, texts, words, mask = _embeddings()
    torch.manual_seed(0)
    head = LocVTPContextProjectionHead(make_config(projection_dim=8, context_window=2))
    offsets = sample_context_offsets(4, 5, 2, generator=torch.Generator().manual_seed(1))
    loss_fn = LocVTPLoss(fine_topk_words=topk, fine_topk_clips=topk, temporal_sigma=1.5)
    scale = torch.tensor(1 / TAU)
    out = loss_fn(clips, videos, texts, words, mask, scale, context_head=head, context_offsets=offsets)

    logits = scale * videos @ texts.T
    labels = torch.arange(4)
    coarse = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(out.coarse, coarse)

    fine = (_reference_clip_to_word(clips, clips, words, mask, topk, TAU)
            + _reference_word_to_clip(clips, words, mask, topk, TAU)) / 2
    assert out.fine.item() == pytest.approx(fine, rel=1e-4)

    with torch.no_grad():
        warped = [[head(clips[b, t + offsets[b, t]], -offsets[b, t]) for t in range(5)] for b in range(4)]
    warp = _reference_clip_to_word(warped, clips, words, mask, topk, TAU)
    intra = _reference_intra(warped, clips, sigma=1.5, tau=TAU)
    assert out.temporal.item() == pytest.approx((warp + intra) / 2, rel=1e-4)
    assert out.loss.item() == pytest.approx((out.coarse + out.fine + out.temporal).item())


@pytest.mark.parametrize("chunk_size", [None, 1])
def test_same_sample_negatives_and_a_discovery_mask_match_the_formulas(chunk_size):
    clips, videos, texts, words, mask = _embeddings()
    discoverable = mask.clone()
    discoverable[:, 0] = False  # e.g. a stop word at the start of every sentence
    discoverable[1, 2] = False
    torch.manual_seed(0)
    head = LocVTPContextProjectionHead(make_config(projection_dim=8, context_window=2))
    offsets = sample_context_offsets(4, 5, 2, generator=torch.Generator().manual_seed(1))
    loss_fn = LocVTPLoss(fine_topk_words=2, fine_topk_clips=2, fine_negatives="same_and_other_samples",
                         chunk_size=chunk_size)
    out = loss_fn(clips, videos, texts, words, mask, torch.tensor(1 / TAU), context_head=head,
                  context_offsets=offsets, discovery_mask=discoverable)

    _assert_fine_and_temporal_match_the_formulas(out, clips, words, mask, head, offsets, topk=2, same_sample=True,
                                                 discoverable=discoverable)
    # the other-samples-only default gives another (lower: fewer negatives) fine loss on the same inputs
    default = LocVTPLoss(fine_topk_words=2, fine_topk_clips=2)(clips, videos, texts, words, mask,
                                                                torch.tensor(1 / TAU), context_head=head,
                                                                context_offsets=offsets, discovery_mask=discoverable)
    assert default.fine < out.fine


@pytest.mark.parametrize("fine_negatives", ["other_samples", "same_and_other_samples"])
def test_mutual_discovery_keeps_only_the_pairs_both_sides_picked(fine_negatives):
    clips, videos, texts, words, mask = _embeddings(num_clips=6)
    discoverable = mask.clone()
    discoverable[:, 0] = False
    head = LocVTPContextProjectionHead(make_config(projection_dim=8, context_window=2))
    offsets = sample_context_offsets(4, 6, 2, generator=torch.Generator().manual_seed(1))
    loss_fn = LocVTPLoss(fine_topk_words=2, fine_topk_clips=2, fine_negatives=fine_negatives, discovery_mutual=True)
    out = loss_fn(clips, videos, texts, words, mask, torch.tensor(1 / TAU), context_head=head,
                  context_offsets=offsets, discovery_mask=discoverable)

    words_of_clip, clips_of_word = discover_correspondence(clips, words, discoverable, 2, 2)
    mutual_words, mutual_clips = discover_correspondence(clips, words, discoverable, 2, 2, mutual=True)
    assert torch.equal(mutual_words, words_of_clip & clips_of_word) and torch.equal(mutual_clips, mutual_words)
    # some clips keep no word (they are no queries), but every sample keeps its most similar pair
    assert (~mutual_words.any(-1)).any() and mutual_words.flatten(1).any(-1).all()

    _assert_fine_and_temporal_match_the_formulas(out, clips, words, mask, head, offsets, topk=2,
                                                 same_sample=fine_negatives == "same_and_other_samples",
                                                 discoverable=discoverable, mutual=True)
    plain = LocVTPLoss(fine_topk_words=2, fine_topk_clips=2, fine_negatives=fine_negatives)(
        clips, videos, texts, words, mask, torch.tensor(1 / TAU), context_head=head, context_offsets=offsets,
        discovery_mask=discoverable,
    )
    assert plain.fine.item() != pytest.approx(out.fine.item(), rel=1e-3)


def test_mutual_discovery_comes_from_the_config():
    config = make_config(discovery_mutual=True)
    assert LocVTPForPreTraining(config).locvtp_loss.discovery_mutual
    assert not LocVTPForPreTraining(make_config()).locvtp_loss.discovery_mutual


@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (0.5, 2.0)])
def test_the_two_temporal_terms_can_be_weighted_or_switched_off(weights):
    clips, videos, texts, words, mask = _embeddings()
    head = LocVTPContextProjectionHead(make_config(projection_dim=8, context_window=2))
    offsets = sample_context_offsets(4, 5, 2, generator=torch.Generator().manual_seed(1))
    out = LocVTPLoss(temporal_cross_modal_weight=weights[0], temporal_intra_video_weight=weights[1])(
        clips, videos, texts, words, mask, torch.tensor(1 / TAU), context_head=head, context_offsets=offsets
    )
    with torch.no_grad():
        warped = [[head(clips[b, t + offsets[b, t]], -offsets[b, t]) for t in range(5)] for b in range(4)]
    warp = _reference_clip_to_word(warped, clips, words, mask, 1, TAU)
    intra = _reference_intra(warped, clips, sigma=1.0, tau=TAU)
    assert out.temporal.item() == pytest.approx((weights[0] * warp + weights[1] * intra) / 2, rel=1e-4)
    # the two parts are given unweighted, a part whose weight is 0 not at all
    parts = (out.temporal_cross_modal, out.temporal_intra_video)
    for part, weight, reference in zip(parts, weights, (warp, intra)):
        assert part is None if weight == 0 else part.item() == pytest.approx(reference, rel=1e-4)
    with pytest.raises(ValueError, match="not both 0"):
        LocVTPLoss(temporal_cross_modal_weight=0.0, temporal_intra_video_weight=0.0)
    with pytest.raises(ValueError, match="fine_negatives must be one of"):
        LocVTPLoss(fine_negatives="same_sample")


def test_stop_words_excluded_from_discovery_are_never_positives(tokenizer):
    from locvtp_hf.stop_words import stop_word_token_ids

    excluded = stop_word_token_ids(tokenizer)
    vocab = tokenizer.get_vocab()
    assert {vocab[word] for word in ("a", "the", "to", "and", "then", "in", "up", "down")} <= set(excluded)
    assert not {vocab[word] for word in ("man", "door", "opens", "red", "square", "[CLS]", "[PAD]")} & set(excluded)
    torch.manual_seed(0)
    batch = random_batch(tokenizer)
    model = LocVTPForPreTraining(make_config(discovery_excluded_token_ids=excluded))
    captured = {}
    original = model.locvtp_loss.forward

    def capture(*args, **kwargs):
        captured.update(kwargs)
        return original(*args, **kwargs)

    model.locvtp_loss.forward = capture
    out = model(**batch)
    stop = torch.isin(batch["input_ids"], torch.tensor(excluded))
    assert stop.any() and not captured["discovery_mask"][stop].any()
    words_of_clip, clips_of_word = discover_correspondence(
        out.clip_embeds, out.word_embeds, captured["discovery_mask"], topk_words=2, topk_clips=2
    )
    assert not words_of_clip[stop[:, None, :].expand_as(words_of_clip)].any()
    assert not clips_of_word[stop[:, None, :].expand_as(clips_of_word)].any()
    # the real words of each sentence are still discoverable
    assert torch.equal(captured["discovery_mask"], out.word_mask & ~stop)


def test_padding_and_special_tokens_never_become_positives():
    clips, _, _, words, mask = _embeddings()
    # make every masked-out word the best match of every clip of its sample
    words = torch.where(mask[..., None], words, clips.mean(1, keepdim=True))
    words_of_clip, clips_of_word = discover_correspondence(clips, words, mask, topk_words=3, topk_clips=2)
    assert not words_of_clip[~mask[:, None, :].expand_as(words_of_clip)].any()
    assert not clips_of_word[~mask[:, None, :].expand_as(clips_of_word)].any()
    # each clip gets min(3, number of valid words) positives; each valid word exactly 2 clips
    assert torch.equal(words_of_clip.sum(-1), mask.sum(-1, keepdim=True).clamp(max=3).expand(-1, 5))
    assert torch.equal(clips_of_word.sum(1), mask.long() * 2)


def test_aligned_embeddings_give_lower_losses_than_shuffled():
    clips, videos, _, _, _ = _embeddings(batch_size=6, num_clips=4, length=4, dim=16)
    head = LocVTPContextProjectionHead(make_config(projection_dim=16))
    mask = torch.ones(6, 4, dtype=torch.bool)
    loss_fn = LocVTPLoss()
    aligned = loss_fn(clips, videos, videos, clips, mask, torch.tensor(1 / TAU), context_head=head)
    order = torch.roll(torch.arange(6), 1)
    shuffled = loss_fn(clips, videos, videos[order], clips[order], mask, torch.tensor(1 / TAU), context_head=head)
    assert aligned.coarse < shuffled.coarse
    assert aligned.fine < shuffled.fine
    assert aligned.coarse < 0.01 and aligned.fine < 0.1


def test_context_offsets_stay_inside_the_video():
    offsets = sample_context_offsets(64, 5, 2, generator=torch.Generator().manual_seed(0))
    positions = torch.arange(5)[None, :] + offsets
    assert offsets.abs().min() >= 1 and offsets.abs().max() <= 2
    assert positions.min() >= 0 and positions.max() <= 4
    assert set(offsets[:, 2].tolist()) == {-2, -1, 1, 2}  # every allowed offset is drawn
    with pytest.raises(ValueError, match="at least 2 clips"):
        sample_context_offsets(2, 1, 2)


def test_a_few_steps_drive_the_loss_down(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config("vit", "bert")).train()
    batch = random_batch(tokenizer, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(**batch)
        losses.append(out.loss.item())
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("chunk_size", [1, 2, 3])
def test_chunked_losses_and_gradients_equal_unchunked(chunk_size):
    clips, videos, texts, words, mask = _embeddings(batch_size=5)
    mask[4], words[4] = False, 0.0  # a sample without words: its clips have no positive
    head = LocVTPContextProjectionHead(make_config(projection_dim=8))
    offsets = sample_context_offsets(5, 5, 2, generator=torch.Generator().manual_seed(2))
    results = []
    for size in (None, chunk_size):
        inputs = {"clip_embeds": clips, "video_embeds": videos, "text_embeds": texts, "word_embeds": words}
        inputs = {name: value.clone().requires_grad_() for name, value in inputs.items()}
        scale = torch.tensor(1 / TAU, requires_grad=True)
        head.zero_grad(set_to_none=True)
        out = LocVTPLoss(fine_topk_words=2, chunk_size=size)(
            **inputs, word_mask=mask, logit_scale=scale, context_head=head, context_offsets=offsets
        )
        out.loss.backward()
        grads = {name: value.grad for name, value in inputs.items()}
        grads.update({name: parameter.grad.clone() for name, parameter in head.named_parameters()}, scale=scale.grad)
        results.append((out, grads))
    (unchunked, unchunked_grads), (chunked, chunked_grads) = results
    for term in ("loss", "coarse", "fine", "temporal"):
        torch.testing.assert_close(getattr(chunked, term), getattr(unchunked, term), msg=term)
    for name, grad in unchunked_grads.items():
        assert torch.isfinite(chunked_grads[name]).all(), name
        torch.testing.assert_close(chunked_grads[name], grad, msg=name)
    assert unchunked_grads["clip_embeds"].abs().sum() > 0


def test_chunking_keeps_the_memory_of_the_clip_word_terms_linear_in_the_batch():
    head = LocVTPContextProjectionHead(make_config(projection_dim=8))

    def peak_bytes(batch_size, chunk_size):
        generator = torch.Generator().manual_seed(0)
        clips = F.normalize(torch.randn(batch_size, 8, 8, generator=generator), dim=-1).requires_grad_()
        words = F.normalize(torch.randn(batch_size, 16, 8, generator=generator), dim=-1).requires_grad_()
        videos = F.normalize(clips.detach().mean(1), dim=-1)
        mask = torch.ones(batch_size, 16, dtype=torch.bool)
        loss_fn = LocVTPLoss(coarse_weight=0, chunk_size=chunk_size)
        with peak_memory(torch.device("cpu")) as memory:  # forward and backward: the recomputed chunks count
            loss_fn(clips, videos, videos, words, mask, torch.tensor(1 / TAU), context_head=head).loss.backward()
        return memory.bytes

    # the [B, T, B, L] logits make the unchunked memory quadratic in the batch; chunks of 4 samples make it linear
    # (batches of 128 and 256: below, the [B, T, L]-sized tensors, linear in the batch, still outweigh the logits)
    unchunked = [peak_bytes(batch_size, None) for batch_size in (128, 256)]
    chunked = [peak_bytes(batch_size, 4) for batch_size in (128, 256)]
    assert unchunked[1] / unchunked[0] > 3.5, unchunked
    assert chunked[1] / chunked[0] < 2.2, chunked
    assert chunked[1] < unchunked[1] / 5


def _mask_multi_positive_nce(queries, keys, key_mask, positives, offset, temperature, chunk_size=None,
                             own_negatives=None):
    """`multi_positive_nce` as the package computed it before issue 16: all `[B, Q, G, K]` logits at once, with
    boolean masks of the numerator (the positives) and the denominator (the valid keys of the other samples, the
    positives and the own negatives)."""
    batch_size, num_queries = positives.shape[:2]
    logits = torch.einsum("bqd,gkd->bqgk", queries, keys).float() / temperature
    rows = torch.arange(batch_size)
    numerator = torch.zeros(logits.shape, dtype=torch.bool)
    numerator[rows, :, rows + offset] = positives
    denominator = key_mask.bool()[None, None].repeat(batch_size, num_queries, 1, 1)
    own_kept = positives if own_negatives is None else positives | own_negatives[:, None, :]
    denominator[rows, :, rows + offset] = own_kept
    fill = torch.finfo(logits.dtype).min  # not -inf: queries without positives get zero gradients, not NaN
    losses = logits.masked_fill(~denominator, fill).flatten(2).logsumexp(-1) - logits.masked_fill(
        ~numerator, fill
    ).flatten(2).logsumexp(-1)
    valid = positives.any(-1)
    return losses[valid].sum(), valid.sum()


def _losses_and_gradients(clips, videos, texts, words, mask, head, offsets, discovery_mask=None, **loss_kwargs):
    inputs = {"clip_embeds": clips, "video_embeds": videos, "text_embeds": texts, "word_embeds": words}
    inputs = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    scale = torch.tensor(1 / TAU, requires_grad=True)
    head.zero_grad(set_to_none=True)
    out = LocVTPLoss(**loss_kwargs)(**inputs, word_mask=mask, logit_scale=scale, context_head=head,
                                    context_offsets=offsets, discovery_mask=discovery_mask)
    out.loss.backward()
    grads = {name: value.grad for name, value in inputs.items()}
    grads.update({name: parameter.grad.clone() for name, parameter in head.named_parameters()}, scale=scale.grad)
    return out, grads


@pytest.mark.parametrize("fine_negatives", ["other_samples", "same_and_other_samples"])
@pytest.mark.parametrize("chunk_size", [None, 2, 3])
def test_fine_and_temporal_terms_equal_the_mask_formulation(fine_negatives, chunk_size, monkeypatch):
    clips, videos, texts, words, mask = _embeddings(batch_size=5, num_clips=5, length=7)
    mask[4], words[4] = False, 0.0  # a sample without words: its clips have no positive
    discoverable = mask.clone()
    discoverable[:, 1] = False  # tokens excluded from discovery (e.g. stop words)
    discoverable[2, 3] = False
    torch.manual_seed(0)
    head = LocVTPContextProjectionHead(make_config(projection_dim=8))
    offsets = sample_context_offsets(5, 5, 2, generator=torch.Generator().manual_seed(2))
    # chunks of 2 and 3 samples do not divide the batch of 5
    options = dict(fine_topk_words=2, fine_topk_clips=2, fine_negatives=fine_negatives, chunk_size=chunk_size)
    fused, fused_grads = _losses_and_gradients(
        clips, videos, texts, words, mask, head, offsets, discovery_mask=discoverable, **options
    )
    with torch.no_grad():
        without_grad = LocVTPLoss(**options)(
            clips, videos, texts, words, mask, torch.tensor(1 / TAU), context_head=head, context_offsets=offsets,
            discovery_mask=discoverable,
        )
    monkeypatch.setattr(locvtp_hf.loss, "multi_positive_nce", _mask_multi_positive_nce)
    reference, reference_grads = _losses_and_gradients(
        clips, videos, texts, words, mask, head, offsets, discovery_mask=discoverable, **options
    )
    for term in ("loss", "fine", "temporal"):
        torch.testing.assert_close(getattr(fused, term), getattr(reference, term), msg=term)
        torch.testing.assert_close(getattr(without_grad, term), getattr(reference, term).detach(), msg=term)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, msg=name)
    assert reference_grads["word_embeds"].abs().sum() > 0


def test_fine_term_survives_logits_far_above_the_positives(monkeypatch):
    # sample 1's words are sample 0's clips: at a temperature of 0.005, other samples' words score up to ~150 above
    # the positives of sample 0's clips, past the point where exp(logit - positives) overflows float32
    clips, videos, texts, words, mask = _embeddings(batch_size=4, num_clips=5, length=6)
    words[1, :5] = clips[0]
    mask[1, :5] = True
    head = LocVTPContextProjectionHead(make_config(projection_dim=8))
    offsets = sample_context_offsets(4, 5, 2, generator=torch.Generator().manual_seed(1))
    options = dict(fine_temperature=0.005, chunk_size=1)
    fused, fused_grads = _losses_and_gradients(clips, videos, texts, words, mask, head, offsets, **options)
    monkeypatch.setattr(locvtp_hf.loss, "multi_positive_nce", _mask_multi_positive_nce)
    reference, reference_grads = _losses_and_gradients(clips, videos, texts, words, mask, head, offsets, **options)
    assert reference.fine > 20
    for term in ("loss", "fine", "temporal"):
        torch.testing.assert_close(getattr(fused, term), getattr(reference, term), msg=term)
    for name, grad in reference_grads.items():  # gradients of up to ~40, through logits scaled by 200
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-5, atol=1e-4, msg=name)


def test_positives_must_be_valid_keys():
    clips, _, _, words, mask = _embeddings()
    positives = torch.zeros(4, 5, 6, dtype=torch.bool)
    positives[1, :, 5] = True  # the last word of sample 1 is padding
    with pytest.raises(ValueError, match="valid key of its own sample"):
        multi_positive_nce(clips, words, mask, positives, 0, TAU)


def test_chunk_size_comes_from_the_config_and_is_checked():
    assert LocVTPForPreTraining(make_config(loss_chunk_size=3)).locvtp_loss.chunk_size == 3
    assert LocVTPForPreTraining(make_config(loss_chunk_size=None)).locvtp_loss.chunk_size is None
    with pytest.raises(ValueError, match="loss_chunk_size must be at least 1"):
        make_config(loss_chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        LocVTPLoss(chunk_size=0)


def test_two_processes_equal_one(tmp_path):
    # process 0 holds samples 0-1, process 1 samples 2-4: uneven batches and text lengths; the processes compute their
    # losses in chunks of one sample, the single process at once
    splits = [(0, 2), (2, 5)]
    clips, videos, texts, words, mask = _embeddings(batch_size=5, num_clips=5, length=7)
    head = LocVTPContextProjectionHead(make_config(projection_dim=8))
    offsets = sample_context_offsets(5, 5, 2, generator=torch.Generator().manual_seed(3))
    scale = torch.tensor(1 / TAU)
    torch.save({"clips": clips, "videos": videos, "texts": texts, "words": words, "mask": mask, "splits": splits,
                "head": head.state_dict(), "config": {"projection_dim": 8}, "offsets": offsets, "scale": scale,
                "loss_kwargs": {"fine_topk_words": 2, "chunk_size": 1}}, tmp_path / "data.pt")
    # a fresh torchrun rather than a fork: forking after torch has started its thread pools can deadlock
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    worker = Path(__file__).with_name("distributed_loss_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(worker), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "GLOO_SOCKET_IFNAME": "lo"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    inputs = {"clip_embeds": clips, "video_embeds": videos, "text_embeds": texts, "word_embeds": words}
    inputs = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    scale.requires_grad_()
    out = LocVTPLoss(fine_topk_words=2)(**inputs, word_mask=mask, logit_scale=scale, context_head=head,
                                        context_offsets=offsets)
    out.loss.backward()

    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    # the mean of the per-process losses is the loss of the global batch
    for index, term in enumerate([out.loss, out.coarse, out.fine, out.temporal]):
        torch.testing.assert_close(sum(r["terms"][index] for r in ranks) / 2, term.detach())
    # gathered inputs: each process receives the gradient of the sum of both losses, i.e. 2x the global one
    for name, value in inputs.items():
        for rank, (start, end) in enumerate(splits):
            distributed = ranks[rank]["grads"][name]
            expected = value.grad[start:end, : distributed.shape[1]]
            torch.testing.assert_close(distributed / 2, expected, msg=f"{name} on process {rank}")
    # replicated parameters: the average that DDP takes is the single-process gradient
    for index, parameter in enumerate(head.parameters()):
        torch.testing.assert_close((ranks[0]["head_grads"][index] + ranks[1]["head_grads"][index]) / 2, parameter.grad)
    torch.testing.assert_close((ranks[0]["scale_grad"] + ranks[1]["scale_grad"]) / 2, scale.grad)


def test_term_gradient_norms_measure_each_term_and_leave_grad_alone(tokenizer):
    from locvtp_hf.training import term_gradient_norms

    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config())
    out = model(**random_batch(tokenizer))
    terms = {"coarse": out.loss_coarse, "fine": 2 * out.loss_fine, "temporal": out.loss_temporal, "none": None}
    norms = term_gradient_norms(terms, model.locvtp.vision_model.parameters())
    assert sorted(norms) == ["coarse", "fine", "temporal"]
    assert all(parameter.grad is None for parameter in model.parameters())
    out.loss_fine.backward(retain_graph=True)
    by_hand = torch.cat([parameter.grad.flatten() for parameter in model.locvtp.vision_model.parameters()]).norm()
    assert norms["fine"] == pytest.approx(2 * by_hand.item(), rel=1e-5)
    # the context head is not part of the clip encoder, and a frozen tower is not measured
    model.freeze_towers(vision=True)
    assert term_gradient_norms(terms, model.locvtp.vision_model.parameters()) == {}
