"""`LocVTPForRetrieval`: loading a pre-training checkpoint, the scores against loop implementations of the method doc's
formulas, the InfoNCE loss (also across two processes), training, save/load and errors."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F
from testing_utils import make_config, random_batch
from transformers import AutoModel

from locvtp_hf import LocVTPConfig, LocVTPForRetrieval, LocVTPModel, VideoDecodingError
from locvtp_hf.encoding import encode_videos
from locvtp_hf.evaluation import retrieval_evaluation
from locvtp_hf.loss import retrieval_contrastive_loss
from locvtp_hf.synthetic import SyntheticWorld


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
    # 20 steps on one batch: how far the loss falls depends on the initialisation (seeds 0-5 give 0.004 to 0.54 of
    # the first loss); seed 2 gives 0.014
    torch.manual_seed(2)
    model = LocVTPForRetrieval(make_config("vit", "bert", retrieval_fusion_weight=0.5)).train()
    batch = random_batch(tokenizer, batch_size=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(20):
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for name, parameter in model.named_parameters():  # no pre-training head: every parameter is used
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


def _collection_with_unreadable_videos(tmp_path) -> tuple[SyntheticWorld, list[str]]:
    """Three readable synthetic videos, a missing file (second) and a corrupt one (fourth)."""
    world = SyntheticWorld(seed=3, num_train=0, num_validation=0, num_test=3, size=32, min_duration=8.0,
                           max_duration=10.0, max_events=2)
    good = sorted(str(path) for path in world.export(tmp_path, "test").glob("*.mp4"))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"this is not a video" * 50)
    return world, [good[0], str(tmp_path / "missing.mp4"), good[1], str(corrupt), good[2]]


def test_encoding_videos_is_the_same_with_decoding_workers(processor):
    torch.manual_seed(0)
    model = LocVTPModel(make_config()).eval()
    world = SyntheticWorld(seed=3, num_train=0, num_validation=0, num_test=5, size=32)
    video_ids = [video.video_id for video in world.videos("test")]

    in_process = encode_videos(model, processor, video_ids, world.render, world.fps, batch_size=2)
    with_workers = encode_videos(
        model, processor, video_ids, world.render, world.fps, batch_size=2, num_workers=1, progress_bar=True
    )

    for expected, found in zip(in_process, with_workers, strict=True):
        assert torch.equal(found, expected)
    # and the same as decoding each batch in one processor call
    first_batch = [world.render(video_id) for video_id in video_ids[:2]]
    inputs = processor.video_processor(first_batch, video_fps=world.fps, return_tensors="pt")
    with torch.no_grad():
        expected = model.get_video_features(inputs["pixel_values_videos"]).pooler_output
    torch.testing.assert_close(in_process[0][:2], expected)
    assert torch.equal(in_process[2][:2], inputs["clip_spans"])


def test_unreadable_videos_raise_by_default_or_are_skipped_and_reported(processor, tmp_path):
    torch.manual_seed(0)
    model = LocVTPForRetrieval(make_config()).eval()
    _, videos = _collection_with_unreadable_videos(tmp_path)

    with pytest.raises(FileNotFoundError, match=r"^videos\[1\]: .*missing\.mp4"):
        encode_videos(model, processor, videos, batch_size=2)

    embeds, clips, spans, unreadable = encode_videos(model, processor, videos, batch_size=2, skip_unreadable=True)
    readable = [videos[0], videos[2], videos[4]]
    for expected, found in zip(encode_videos(model, processor, readable), (embeds, clips, spans), strict=True):
        torch.testing.assert_close(found, expected)
    assert [(video.index, video.video) for video in unreadable] == [(1, videos[1]), (3, videos[3])]
    assert unreadable[0].reason.startswith("FileNotFoundError: ") and "missing.mp4" in unreadable[0].reason
    assert unreadable[1].reason.startswith("VideoDecodingError: ") and "corrupt.mp4" in unreadable[1].reason

    # the retrieval evaluation leaves out the unreadable videos and their captions
    dataset = datasets.Dataset.from_dict(
        {"video": videos, "captions": [["a square moves"], ["a ball"], ["a box grows", "a box"], ["x"], ["a circle"]]}
    )
    metrics, skipped = retrieval_evaluation(model, processor, dataset, batch_size=2, skip_unreadable=True)
    assert skipped == unreadable
    expected = retrieval_evaluation(model, processor, dataset.select([0, 2, 4]), batch_size=2)
    assert metrics == expected and metrics["num_videos"] == 3 and metrics["num_texts"] == 4

    with pytest.raises(VideoDecodingError, match="None of the 2 videos could be read"):
        encode_videos(model, processor, [videos[1], videos[3]], skip_unreadable=True)


def test_real_corrupted_video_is_skipped_by_the_encoder(real_data, processor):
    torch.manual_seed(0)
    model = LocVTPModel(make_config()).eval()
    good, corrupted = str(real_data / "videos" / "carphone_pristine.mp4"), str(real_data / "videos" / "corrupted.mp4")

    embeds, _, _, unreadable = encode_videos(model, processor, [corrupted, good], skip_unreadable=True, num_workers=1)

    assert [(video.index, video.video) for video in unreadable] == [(0, corrupted)]
    assert unreadable[0].reason.startswith("VideoDecodingError: ") and "corrupted.mp4" in unreadable[0].reason
    torch.testing.assert_close(embeds, encode_videos(model, processor, [good])[0])
