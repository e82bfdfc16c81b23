"""`LocVTPForRetrieval`: loading a pre-training checkpoint, the scores against loop implementations of the method doc's
formulas, the InfoNCE loss (also across two processes), training, save/load and errors."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_config, random_batch
from transformers import AutoModel

from locvtp_hf import LocVTPConfig, LocVTPForRetrieval, LocVTPModel
from locvtp_hf.loss import retrieval_contrastive_loss


def _reference_fine_score(words, mask, clips):
    """Text i, video j: the mean over the clips of j of the best similarity of the clip to a word of i."""
    scores = torch.zeros(words.shape[0], clips.shape[0])
    for i in range(words.shape[0]):
        valid = [n for n in range(words.shape[1]) if mask[i, n]]
        for j in range(clips.shape[0]):
            best = [max(float(clips[j, t] @ words[i, n]) for n in valid) for t in range(clips.shape[1])]
            scores[i, j] = sum(best) / len(best)
    return scores


def test_a_pretraining_checkpoint_loads_with_all_its_weights(tmp_path, tokenizer):
    torch.manual_seed(0)
    pretrained = LocVTPModel(make_config("vit", "bert")).eval()
    pretrained.save_pretrained(tmp_path)
    model = LocVTPForRetrieval.from_pretrained(tmp_path).eval()

    expected, loaded = pretrained.state_dict(), model.locvtp.state_dict()
    assert expected.keys() == loaded.keys()
    for name in expected:
        assert torch.equal(loaded[name], expected[name]), name
    batch = random_batch(tokenizer)
    with torch.no_grad():
        out, expected_out = model(**batch), pretrained(**batch)
    assert torch.equal(out.video_embeds, expected_out.video_embeds)
    assert torch.equal(out.text_embeds, expected_out.text_embeds)
    torch.testing.assert_close(out.logits_per_text, expected_out.logits_per_text)


def test_logits_are_the_scaled_coarse_similarity_by_default(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForRetrieval(make_config("timesformer", "bert")).eval()
    batch = random_batch(tokenizer, batch_size=3)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][:2]  # 3 texts, 2 videos
    with torch.no_grad():
        out = model(**batch)
    assert out.logits_per_text.shape == (3, 2) and out.logits_per_video.shape == (2, 3)
    scale = model.locvtp.logit_scale.exp()
    torch.testing.assert_close(out.logits_per_text, scale * out.text_embeds @ out.video_embeds.T)
    torch.testing.assert_close(out.logits_per_video, out.logits_per_text.T)


def test_fusion_mixes_in_the_fine_grained_clip_word_score(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForRetrieval(make_config("vit", "distilbert", retrieval_fusion_weight=0.3)).eval()
    batch = random_batch(tokenizer, batch_size=4)
    with torch.no_grad():
        out = model(**batch)
    fine = _reference_fine_score(out.word_embeds, out.word_mask, out.clip_embeds)
    expected = 0.7 * out.text_embeds @ out.video_embeds.T + 0.3 * fine
    torch.testing.assert_close(out.logits_per_text, model.locvtp.logit_scale.exp() * expected)
    # chunked scoring (as in evaluation) gives the same scores
    chunked = model.similarity(out.text_embeds, out.video_embeds, out.word_embeds, out.word_mask, out.clip_embeds, 3)
    torch.testing.assert_close(chunked, expected)


@pytest.mark.parametrize("fusion_weight", [0.0, 0.5])
def test_the_loss_is_symmetric_infonce_over_the_pairs(tokenizer, fusion_weight):
    torch.manual_seed(0)
    model = LocVTPForRetrieval(make_config("vit", "bert", retrieval_fusion_weight=fusion_weight)).eval()
    out = model(**random_batch(tokenizer, batch_size=4), return_loss=True)
    labels = torch.arange(4)
    expected = (F.cross_entropy(out.logits_per_text, labels) + F.cross_entropy(out.logits_per_video, labels)) / 2
    torch.testing.assert_close(out.loss, expected)


def test_training_sends_gradients_to_both_towers_and_lowers_the_loss(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForRetrieval(make_config("vit", "bert", retrieval_fusion_weight=0.5)).train()
    batch = random_batch(tokenizer, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(20):
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for name, parameter in model.named_parameters():
                if name.startswith("locvtp.context_head."):  # the pre-training head takes no part in retrieval
                    assert parameter.grad is None, name
                else:
                    assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_save_and_load_give_identical_outputs(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = LocVTPForRetrieval(make_config("videomae", "bert", retrieval_fusion_weight=0.25)).eval()
    model.save_pretrained(tmp_path)
    reloaded = LocVTPForRetrieval.from_pretrained(tmp_path).eval()
    assert reloaded.config.retrieval_fusion_weight == 0.25
    assert reloaded.config.architectures == ["LocVTPForRetrieval"]
    batch = random_batch(tokenizer)
    with torch.no_grad():
        before, after = model(**batch, return_loss=True), reloaded(**batch, return_loss=True)
    assert torch.equal(before.logits_per_text, after.logits_per_text)
    assert torch.equal(before.loss, after.loss)
    # there is no Auto class for retrieval: AutoModel gives the underlying LocVTPModel, with the same weights
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is LocVTPModel
    for name, value in model.locvtp.state_dict().items():
        assert torch.equal(base.state_dict()[name], value), name


def test_bad_inputs_are_refused_with_a_clear_error(tokenizer):
    model = LocVTPForRetrieval(make_config("vit", "bert"))
    batch = random_batch(tokenizer, batch_size=3)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][:2]
    with pytest.raises(ValueError, match="3 texts and 2 videos"):
        model(**batch, return_loss=True)
    with pytest.raises(ValueError, match="needs both"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match="retrieval_fusion_weight must be in"):
        LocVTPConfig(retrieval_fusion_weight=1.5)


def test_two_processes_equal_one(tmp_path):
    """The loss over the global batch with the fine-grained score fused in: each process holds part of the pairs
    (uneven, texts padded to different lengths); the mean of their losses and their gradients equal one process's."""
    generator = torch.Generator().manual_seed(0)
    batch_size, num_clips, length, dim = 5, 3, 6, 8
    texts = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=-1)
    videos = F.normalize(torch.randn(batch_size, dim, generator=generator), dim=-1)
    clips = F.normalize(torch.randn(batch_size, num_clips, dim, generator=generator), dim=-1)
    mask = torch.arange(length)[None, :] < torch.tensor([2, 6, 3, 4, 5])[:, None]
    words = F.normalize(torch.randn(batch_size, length, dim, generator=generator), dim=-1) * mask[..., None]
    scale = torch.tensor(10.0)
    splits = [(0, 2), (2, 5)]
    torch.save({"texts": texts, "videos": videos, "clips": clips, "words": words, "mask": mask, "scale": scale,
                "splits": splits, "fusion_weight": 0.4}, tmp_path / "data.pt")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    worker = Path(__file__).with_name("distributed_retrieval_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(worker), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "GLOO_SOCKET_IFNAME": "lo"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    inputs = {"text_embeds": texts, "video_embeds": videos, "word_embeds": words, "clip_embeds": clips}
    inputs = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    scale.requires_grad_()
    loss = retrieval_contrastive_loss(**inputs, word_mask=mask, logit_scale=scale, fusion_weight=0.4)
    loss.backward()

    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, loss.detach())
    for name, value in inputs.items():
        for rank, (start, end) in enumerate(splits):
            distributed = ranks[rank]["grads"][name]  # the gradient of the sum of both losses: 2x the global one
            torch.testing.assert_close(distributed / 2, value.grad[start:end, : distributed.shape[1]], msg=name)
    torch.testing.assert_close((ranks[0]["scale_grad"] + ranks[1]["scale_grad"]) / 2, scale.grad)
