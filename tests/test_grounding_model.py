"""LocVTPForTemporalGrounding: the 2D map, both input routes, the loss, loading, the processor route, post-processing
and the video-temporal-grounding pipeline."""

import functools
import http.server
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from testing_utils import FRAMES_PER_CLIP, IMAGE_SIZE, make_config, random_batch
from safetensors.torch import load_file
from transformers import AutoProcessor, pipeline

from locvtp_hf import (
    AutoModelForVideoTemporalGrounding,
    LocVTPConfig,
    LocVTPForTemporalGrounding,
    LocVTPModel,
    LocVTPProcessor,
    LocVTPVideoProcessor,
)
from locvtp_hf import metrics
from locvtp_hf.grounding_postprocessing import grounding_moments, temporal_nms
from locvtp_hf.loss import saliency_loss
from locvtp_hf.modeling_locvtp import LocVTPForPreTraining, LocVTPTemporalGroundingHead
from locvtp_hf.moment_geometry import pool_clips_to_positions, temporal_iou
from locvtp_hf.synthetic import SyntheticWorld
from locvtp_hf.zero_shot_grounding import zero_shot_grounding, zero_shot_saliency


HEAD = dict(grounding_hidden_size=16, grounding_num_conv_layers=2, grounding_conv_kernel_size=3)


def grounding_config(**kwargs) -> LocVTPConfig:
    return make_config(**{**HEAD, **kwargs})


def text_inputs(tokenizer, sentences) -> dict:
    return dict(tokenizer(sentences, padding=True, return_special_tokens_mask=True, return_tensors="pt"))


@pytest.fixture(scope="module")
def world_videos(tmp_path_factory):
    """Two synthetic mp4 files (32 px, 4 fps, 8-12 s) and their durations."""
    world = SyntheticWorld(seed=0, num_train=0, num_validation=0, num_test=2, size=32, min_duration=8.0,
                           max_duration=12.0, max_events=2)
    folder = world.export(tmp_path_factory.mktemp("world"), "test")
    return [str(folder / f"{video.video_id}.mp4") for video in world.videos("test")], world


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LocVTPForTemporalGrounding(grounding_config()).eval()


# ------------------------------------------------------------------------------------------------------- config


def test_config_map_layout_defaults_and_checks(tmp_path):
    assert LocVTPConfig().grounding_pooling_counts == [15]
    assert LocVTPConfig(grounding_num_positions=64).grounding_pooling_counts == [15, 8, 8]
    assert LocVTPConfig(grounding_num_positions=64, grounding_pooling_counts=[15, 8, 8, 8]).grounding_num_positions
    with pytest.raises(ValueError, match=r"at most 32 positions.*grounding_num_positions=64"):
        LocVTPConfig(grounding_num_positions=64, grounding_pooling_counts=[15, 8])
    with pytest.raises(ValueError, match="grounding_conv_kernel_size must be odd"):
        LocVTPConfig(grounding_conv_kernel_size=4)
    with pytest.raises(ValueError, match="grounding_iou_min < grounding_iou_max"):
        LocVTPConfig(grounding_iou_min=0.7, grounding_iou_max=0.5)

    config = grounding_config(grounding_num_positions=32, grounding_freeze_encoder=True)
    config.save_pretrained(tmp_path)
    loaded = LocVTPConfig.from_pretrained(tmp_path)
    assert (loaded.grounding_num_positions, loaded.grounding_pooling_counts) == (32, [15, 8])
    assert loaded.grounding_freeze_encoder and loaded.grounding_hidden_size == 16


def test_checkpoint_saved_before_the_grounding_fields_loads(tmp_path):
    torch.manual_seed(0)
    LocVTPModel(make_config()).save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    saved = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({key: value for key, value in saved.items() if "grounding" not in key}))
    model = LocVTPForTemporalGrounding.from_pretrained(tmp_path)
    assert model.config.grounding_num_positions == 16 and model.config.grounding_pooling_counts == [15]


# ----------------------------------------------------------------------------------------------------- the map


@pytest.mark.parametrize("num_positions, pooling_counts", [(16, [15]), (64, [15, 8, 8]), (50, [15, 8, 8]), (8, [7])])
def test_span_max_map_holds_the_max_of_each_candidate_span(num_positions, pooling_counts):
    head = LocVTPTemporalGroundingHead(
        grounding_config(grounding_num_positions=num_positions, grounding_pooling_counts=pooling_counts)
    )
    features = torch.randn(2, 3, num_positions)
    span_map, mask = head.span_max_map(features), head.moment_mask()
    starts, ends = mask.nonzero(as_tuple=True)
    assert (ends >= starts).all() and mask.diagonal().all()
    for start, end in zip(starts.tolist(), ends.tolist()):
        assert torch.equal(span_map[:, :, start, end], features[:, :, start : end + 1].amax(-1))
    assert (span_map[:, :, ~mask] == 0).all()
    if pooling_counts == [num_positions - 1]:
        assert mask.sum() == num_positions * (num_positions + 1) // 2  # dense
    if num_positions in (16, 64):
        assert mask[0, num_positions - 1]  # the whole video is a candidate
    if num_positions == 64:
        # sparse: 64 + 63 + ... + 49 dense cells, then every second start for 17..31 and every fourth for 35..63
        dense = sum(64 - offset for offset in range(16))
        assert mask.sum() == dense + sum(len(range(0, 64 - o, 2)) for o in range(17, 32, 2)) + sum(
            len(range(0, 64 - o, 4)) for o in range(35, 64, 4)
        )


def test_pool_clips_to_positions():
    features = torch.randn(1, 16, 3)
    full = torch.ones(1, 16, dtype=torch.bool)
    torch.testing.assert_close(pool_clips_to_positions(features, full, 16), features)
    torch.testing.assert_close(pool_clips_to_positions(features, full, 8), features.view(1, 8, 2, 3).mean(2))
    # 4 real clips spread over 16 positions, 4 each; the padded clips (garbage) do not count
    mask = torch.arange(16)[None] < 4
    padded = torch.where(mask[..., None], features, torch.full_like(features, 1e6))
    torch.testing.assert_close(
        pool_clips_to_positions(padded, mask, 16), features[:, :4].repeat_interleave(4, dim=1)
    )
    # 3 clips over 2 positions: the middle clip is split between them
    expected = torch.stack([features[0, 0] * 2 / 3 + features[0, 1] / 3, features[0, 1] / 3 + features[0, 2] * 2 / 3])
    torch.testing.assert_close(pool_clips_to_positions(features[:, :3], full[:, :3], 2)[0], expected)


# -------------------------------------------------------------------------------------------- model, two routes


def test_output_masks_non_candidates_and_gives_moments_in_seconds(model, tokenizer):
    batch = random_batch(tokenizer, batch_size=2)
    durations = torch.tensor([10.0, 32.0])
    with torch.no_grad():
        out = model(**batch, video_durations=durations)
    n = model.config.grounding_num_positions
    assert out.logits.shape == out.scores.shape == (2, n, n) and out.moment_mask.shape == (n, n)
    assert not out.moment_mask.tril(-1).any()  # j < i is never a candidate
    assert torch.isneginf(out.logits[:, ~out.moment_mask]).all()
    assert torch.isfinite(out.logits[:, out.moment_mask]).all()
    assert (out.scores[:, ~out.moment_mask] == 0).all()
    assert torch.equal(out.video_durations, durations)
    torch.testing.assert_close(out.candidate_moments[1, 2, 5], torch.tensor([2 / n * 32.0, 6 / n * 32.0]))
    assert out.video_features.shape == (2, 4, model.config.projection_dim)
    assert out.text_embeds.shape == (2, model.config.projection_dim)


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5])
def test_a_chunk_size_that_is_not_a_positive_int_is_rejected(model, tokenizer, chunk_size):
    pixels = random_batch(tokenizer, batch_size=1)["pixel_values_videos"]
    with pytest.raises(ValueError, match=rf"chunk_size .* a positive int, got {chunk_size}"):
        model.get_clip_features(pixels, chunk_size=chunk_size)


def test_raw_and_feature_routes_agree_and_padding_is_ignored(model, tokenizer):
    batch = random_batch(tokenizer, batch_size=2)
    clip_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    text = {key: value for key, value in batch.items() if key != "pixel_values_videos"}
    with torch.no_grad():
        features = model.get_clip_features(batch["pixel_values_videos"], clip_mask)
        raw = model(**batch, clip_mask=clip_mask)
        from_features = model(video_features=features, video_mask=clip_mask, **text)
        # other pixels in the padded clips change nothing
        noisy = batch["pixel_values_videos"].clone()
        noisy[1, 2:] = torch.randn_like(noisy[1, 2:])
        noisy_out = model(**{**batch, "pixel_values_videos": noisy}, clip_mask=clip_mask)
        for chunk_size in (1, 3, 100):
            chunked = model.get_clip_features(batch["pixel_values_videos"], clip_mask, chunk_size=chunk_size)
            torch.testing.assert_close(chunked, features, rtol=0, atol=1e-6)
        # the same features, with the padding dropped
        alone = model(video_features=features[1:, :2], **{key: value[1:] for key, value in text.items()})
    assert (features[1, 2:] == 0).all()
    with torch.no_grad():
        direct = model.locvtp.get_video_features(batch["pixel_values_videos"][:1]).clip_embeds[0]
    torch.testing.assert_close(features[0], direct)
    assert torch.equal(raw.logits, from_features.logits)
    torch.testing.assert_close(noisy_out.logits, raw.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(alone.logits[0], raw.logits[1], rtol=0, atol=1e-5)


def test_loss_is_bce_against_the_scaled_iou(model, tokenizer):
    batch = random_batch(tokenizer, batch_size=2)
    durations, targets = torch.tensor([8.0, 16.0]), torch.tensor([[1.0, 5.0], [0.0, 16.0]])
    out = model(**batch, video_durations=durations, target_moments=targets)
    n = model.config.grounding_num_positions
    expected_targets, logits = [], []
    for b in range(2):
        for i in range(n):
            for j in range(i, n):
                start, end = i / n * durations[b].item(), (j + 1) / n * durations[b].item()
                intersection = max(0.0, min(end, targets[b, 1].item()) - max(start, targets[b, 0].item()))
                iou = intersection / (end - start + targets[b, 1].item() - targets[b, 0].item() - intersection)
                expected_targets.append(min(max((iou - 0.5) / 0.5, 0.0), 1.0))
                logits.append(out.logits[b, i, j])
    expected = F.binary_cross_entropy_with_logits(torch.stack(logits), torch.tensor(expected_targets))
    torch.testing.assert_close(out.loss, expected)


def test_every_head_parameter_and_the_used_encoder_get_gradients(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(grounding_config()).train()
    out = model(**random_batch(tokenizer, batch_size=2), video_durations=torch.tensor([4.0, 6.0]),
                target_moments=torch.tensor([[0.5, 2.0], [1.0, 6.0]]))
    out.loss.backward()
    for name, parameter in model.grounding_head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # the pre-training-only part (logit scale) is not used by grounding
    unused = ("logit_scale",)
    no_grad = [name for name, p in model.locvtp.named_parameters() if p.grad is None and not name.startswith(unused)]
    assert no_grad == []


def test_a_frozen_encoder_gets_no_gradient_and_stays_in_eval_mode(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(grounding_config(grounding_freeze_encoder=True)).train()
    assert model.grounding_head.training and not model.locvtp.training
    assert not model.locvtp.vision_model.training and not model.locvtp.text_model.training
    out = model(**random_batch(tokenizer, batch_size=2), video_durations=torch.tensor([4.0, 6.0]),
                target_moments=torch.tensor([[0.5, 2.0], [1.0, 6.0]]))
    out.loss.backward()
    assert all(parameter.grad is None for parameter in model.locvtp.parameters())
    assert all(parameter.grad is not None for parameter in model.grounding_head.parameters())
    assert not out.video_features.requires_grad and not out.text_embeds.requires_grad


def _marked_moment_batch(tokenizer, batch_size, generator, dim=16, max_clips=40, seconds_per_clip=0.5):
    """Noise clip features (20-40 real clips) in which one moment, 15-50% of the video, is marked on feature 0."""
    num_clips = torch.randint(max_clips // 2, max_clips + 1, (batch_size,), generator=generator)
    clip_index = torch.arange(max_clips)[None]
    lengths = (num_clips * (0.15 + 0.35 * torch.rand(batch_size, generator=generator))).long().clamp(min=1)
    starts = (torch.rand(batch_size, generator=generator) * (num_clips - lengths + 1)).long()
    features = torch.randn(batch_size, max_clips, dim, generator=generator)
    features[..., 0] += 3.0 * ((clip_index >= starts[:, None]) & (clip_index < (starts + lengths)[:, None]))
    mask = clip_index < num_clips[:, None]
    return dict(
        video_features=F.normalize(features, dim=-1) * mask[..., None],
        video_mask=mask,
        video_durations=num_clips * seconds_per_clip,
        target_moments=torch.stack([starts, starts + lengths], dim=-1) * seconds_per_clip,
        **text_inputs(tokenizer, ["the red square moves"] * batch_size),
    )


def test_the_head_learns_to_find_a_marked_moment(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(grounding_config(grounding_hidden_size=32, grounding_freeze_encoder=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(60):
        loss = model(**_marked_moment_batch(tokenizer, 16, generator)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.4 * losses[0]

    test = _marked_moment_batch(tokenizer, 64, torch.Generator().manual_seed(123))
    targets = test.pop("target_moments")
    with torch.no_grad():
        out = model.eval()(**test)
    best = out.scores.flatten(1).argmax(dim=1)
    top1 = out.candidate_moments.flatten(1, 2)[torch.arange(64), best]
    iou = temporal_iou(top1[:, None], targets[:, None].float())[:, 0, 0]
    assert (iou >= 0.5).float().mean() >= 0.8, iou


# ----------------------------------------------------------------------------------------------------- loading


def test_a_legacy_grounding_checkpoint_loads_with_identical_outputs():
    """A grounding model saved while `LocVTPModel` held the context head (`locvtp.context_head.*` keys): the head
    is dropped, every other weight loads, and the outputs are those it gave then."""
    fixtures = Path(__file__).parent / "fixtures"
    record = load_file(fixtures / "legacy_outputs.safetensors")
    inputs = {name.removeprefix("inputs."): value for name, value in record.items() if name.startswith("inputs.")}
    model, info = LocVTPForTemporalGrounding.from_pretrained(
        fixtures / "legacy_locvtp_grounding", output_loading_info=True
    )
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert not any("context_head" in name for name in model.state_dict())
    assert not model.config.grounding_saliency_head and model.saliency_head is None
    names = ("pixel_values_videos", "clip_mask", "input_ids", "attention_mask", "special_tokens_mask",
             "video_durations", "target_moments")
    with torch.no_grad():
        out = model.eval()(**{name: inputs[name] for name in names})
    for name in ("loss", "logits", "scores", "video_features", "text_embeds"):
        assert torch.equal(getattr(out, name), record[f"grounding.{name}"]), name
    assert torch.equal(out.loss_moment, out.loss) and out.saliency_logits is None


def test_a_pretraining_checkpoint_keeps_the_encoder_and_initialises_the_head(tmp_path, tokenizer):
    torch.manual_seed(0)
    pretrained = LocVTPForPreTraining(grounding_config())
    pretrained.save_pretrained(tmp_path / "pretrained")
    model, info = LocVTPForTemporalGrounding.from_pretrained(tmp_path / "pretrained", output_loading_info=True)
    head_keys = {f"grounding_head.{name}" for name in model.grounding_head.state_dict()}
    assert set(info["missing_keys"]) == head_keys and not info["unexpected_keys"]
    expected, loaded = pretrained.locvtp.state_dict(), model.locvtp.state_dict()
    assert expected.keys() == loaded.keys()
    assert all(torch.equal(expected[key], loaded[key]) for key in expected)

    model.save_pretrained(tmp_path / "grounding")
    reloaded = AutoModelForVideoTemporalGrounding.from_pretrained(tmp_path / "grounding")
    assert type(reloaded) is LocVTPForTemporalGrounding
    batch = random_batch(tokenizer, batch_size=2)
    with torch.no_grad():
        assert torch.equal(model.eval()(**batch).logits, reloaded(**batch).logits)


# ------------------------------------------------------------------------------------------- processor route


def test_processor_cuts_whole_videos_into_clips_and_pads(processor):
    short = np.random.default_rng(0).integers(0, 256, (32, 40, 48, 3), dtype=np.uint8)  # 3.2 s at 10 fps
    long = np.random.default_rng(1).integers(0, 256, (65, 40, 48, 3), dtype=np.uint8)  # 6.5 s
    inputs = processor(videos=[short, long], text=["a dog runs", "a man opens the door"], task="grounding",
                       video_fps=10.0, return_tensors="pt")
    assert inputs["pixel_values_videos"].shape == (2, 6, FRAMES_PER_CLIP, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert inputs["clip_mask"].tolist() == [[1, 1, 1, 0, 0, 0], [1] * 6]
    torch.testing.assert_close(inputs["video_durations"], torch.tensor([3.2, 6.5]))
    assert (inputs["pixel_values_videos"][0, 3:] == 0).all() and (inputs["clip_spans"][0, 3:] == 0).all()
    spans = inputs["clip_spans"][1]
    assert spans[0, 0] >= 0 and spans[-1, 1] <= 6.5 + 1e-6 and (spans[1:, 0] >= spans[:-1, 1] - 1e-6).all()
    # the same clips as the span route gives for the whole video with that many clips
    whole = processor.video_processor(short, video_fps=10.0, num_clips=3, return_tensors="pt")
    assert torch.equal(whole["pixel_values_videos"][0], inputs["pixel_values_videos"][0, :3])

    capped = processor(videos=[long], task="grounding", video_fps=10.0, grounding_max_clips=4, return_tensors="pt")
    assert capped["clip_mask"].shape == (1, 4)
    longer_clips = processor(videos=[long], task="grounding", video_fps=10.0, grounding_clip_seconds=2.0)
    assert len(longer_clips["clip_mask"][0]) == 3

    with pytest.raises(ValueError, match="spans do not apply to task='grounding'"):
        processor(videos=[short], task="grounding", spans=[(0.0, 1.0)], video_fps=10.0)
    with pytest.raises(ValueError, match="task must be one of"):
        processor(videos=[short], task="detection", video_fps=10.0)


def test_grounding_clip_settings_are_saved_with_the_processor(processor, tmp_path):
    processor.video_processor.grounding_clip_seconds = 0.5
    processor.video_processor.grounding_max_clips = 7
    processor.save_pretrained(tmp_path)
    make_config().save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert (loaded.video_processor.grounding_clip_seconds, loaded.video_processor.grounding_max_clips) == (0.5, 7)
    with pytest.raises(ValueError, match="grounding_clip_seconds` must be a positive number"):
        LocVTPVideoProcessor(grounding_clip_seconds=0)


def test_file_videos_through_processor_model_and_post_processing(world_videos, processor, model):
    paths, world = world_videos
    inputs = processor(videos=paths, text=["a red square", "the blue ball jumps"], task="grounding",
                       return_tensors="pt")
    durations = [video.duration for video in world.videos("test")]
    torch.testing.assert_close(inputs["video_durations"], torch.tensor(durations))
    assert inputs["clip_mask"].sum(dim=1).tolist() == [int(duration) for duration in durations]
    with torch.no_grad():
        outputs = model(**inputs)
    moments = processor.post_process_grounding(outputs, top_k=5, nms_threshold=0.5)
    assert len(moments) == 2
    for video_moments, duration in zip(moments, durations):
        assert 1 <= len(video_moments) <= 5
        assert set(video_moments[0]) == {"start", "end", "score"}
        assert all(0 <= m["start"] < m["end"] <= duration + 1e-4 for m in video_moments)
        scores = [m["score"] for m in video_moments]
        assert scores == sorted(scores, reverse=True)
        spans = torch.tensor([[m["start"], m["end"]] for m in video_moments])
        assert (temporal_iou(spans, spans).fill_diagonal_(0) <= 0.5).all()
    # top-1 is the best-scored candidate
    best = outputs.scores[0].max().item()
    assert moments[0][0]["score"] == pytest.approx(best)


def test_temporal_nms():
    moments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [0.0, 4.0]])
    scores = torch.tensor([0.9, 0.8, 0.5, 0.7])
    assert temporal_nms(moments, scores, iou_threshold=0.5).tolist() == [0, 3, 2]  # [1, 10] has IoU 0.9 with [0, 10]
    assert temporal_nms(moments, scores, iou_threshold=0.5, top_k=2).tolist() == [0, 3]
    assert temporal_nms(moments, scores, iou_threshold=None).tolist() == [0, 1, 3, 2]
    assert temporal_nms(moments, scores, iou_threshold=0.3).tolist() == [0, 2]  # [0, 4] has IoU 0.4 with [0, 10]


def test_post_processing_of_features_needs_durations(model, processor, tokenizer):
    features = F.normalize(torch.randn(2, 7, model.config.projection_dim), dim=-1)
    text = text_inputs(tokenizer, ["a dog runs", "a red square"])
    with torch.no_grad():
        without = model(video_features=features, **text)
        with_durations = model(video_features=features, video_durations=torch.tensor([7.0, 14.0]), **text)
    with pytest.raises(ValueError, match="pass video_durations="):
        processor.post_process_grounding(without)
    assert processor.post_process_grounding(without, video_durations=[7.0, 14.0]) == (
        processor.post_process_grounding(with_durations)
    )


# ------------------------------------------------------------------------------------------------------ pipeline


def test_pipeline_with_a_model_object_and_a_folder(world_videos, processor, model, tmp_path):
    paths, _ = world_videos
    queries = ["a red square", "the blue ball jumps"]
    grounder = pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu")
    results = grounder(paths[0], queries=queries, top_k=3)

    inputs = processor(videos=[paths[0]] * 2, text=queries, task="grounding", return_tensors="pt")
    with torch.no_grad():
        expected = processor.post_process_grounding(model(**inputs), top_k=3, nms_threshold=0.5)
    assert len(results) == 2
    for result, reference in zip(results, expected):
        assert [(m["start"], m["end"]) for m in result] == [(m["start"], m["end"]) for m in reference]
        assert [m["score"] for m in result] == pytest.approx([m["score"] for m in reference], abs=1e-6)
    assert grounder(paths[0], queries=queries[0], top_k=3) == results[0]  # one query: one list
    assert len(grounder(paths, queries=queries[0], top_k=1)) == 2  # a list of videos: one result each

    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    from_folder = pipeline("video-temporal-grounding", model=str(tmp_path / "ckpt"), device="cpu")
    assert type(from_folder.model) is LocVTPForTemporalGrounding
    assert from_folder(paths[0], queries=queries, top_k=3) == results

    with pytest.raises(ValueError, match="needs the sentences to ground"):
        grounder(paths[0])
    with pytest.raises(ValueError, match=r"queries\[1\] is ''"):
        grounder(paths[0], queries=["a dog runs", ""])


def test_pipeline_grounds_zero_shot_without_a_trained_head(world_videos, processor, tmp_path, caplog):
    """A plain LocVTPModel, or a pre-training checkpoint loaded as a grounding model (its head untrained), grounds from
    the clip-sentence similarities: the moments of `zero_shot_grounding` on the model's own features."""
    paths, _ = world_videos
    queries = ["a red square", "the blue ball jumps"]
    torch.manual_seed(0)
    encoder = LocVTPModel(grounding_config()).eval()
    results = pipeline("video-temporal-grounding", model=encoder, processor=processor, device="cpu")(
        paths[0], queries=queries, top_k=3
    )
    inputs = processor(videos=[paths[0]], task="grounding", return_tensors="pt")
    with torch.no_grad():
        clips = encoder.get_clip_features(inputs["pixel_values_videos"], inputs["clip_mask"])
        text = encoder.get_text_features(**processor(text=queries, return_tensors="pt")).pooler_output
    expected = zero_shot_grounding(text, clips.expand(2, -1, -1), inputs["clip_spans"].expand(2, -1, -1),
                                   video_durations=inputs["video_durations"].expand(2), top_k=3)
    assert results == expected and all(1 <= len(moments) <= 3 for moments in results)

    encoder.save_pretrained(tmp_path / "pretraining")
    processor.save_pretrained(tmp_path / "pretraining")
    with caplog.at_level("WARNING"):
        from_checkpoint = pipeline("video-temporal-grounding", model=str(tmp_path / "pretraining"), device="cpu")
    assert type(from_checkpoint.model) is LocVTPForTemporalGrounding and from_checkpoint.zero_shot
    assert "without a trained grounding head" in caplog.text
    reloaded = from_checkpoint(paths[0], queries=queries, top_k=3)
    assert [[(m["start"], m["end"]) for m in found] for found in reloaded] == [
        [(m["start"], m["end"]) for m in found] for found in results
    ]


# ----------------------------------------------------------------------------------------------------- saliency


@pytest.fixture
def saliency_model():
    torch.manual_seed(0)
    return LocVTPForTemporalGrounding(grounding_config(grounding_saliency_head=True)).eval()


def _padded_features(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    features = F.normalize(torch.randn(2, 6, model.config.projection_dim, generator=generator), dim=-1)
    return features * mask[..., None], mask


def test_saliency_config_fields():
    config = LocVTPConfig()
    assert not config.grounding_saliency_head and config.grounding_saliency_loss_weight == 1.0
    assert LocVTPForTemporalGrounding(grounding_config()).saliency_head is None
    with pytest.raises(ValueError, match="grounding_saliency_loss_weight must be >= 0"):
        LocVTPConfig(grounding_saliency_loss_weight=-0.5)


def test_saliency_outputs_one_score_per_clip_and_ignore_padding(saliency_model, model, tokenizer):
    features, mask = _padded_features(saliency_model)
    text = text_inputs(tokenizer, ["a dog runs", "a red square"])
    with torch.no_grad():
        out = saliency_model(video_features=features, video_mask=mask, **text)
        garbage = saliency_model(video_features=features + 5 * (1 - mask[..., None]), video_mask=mask, **text)
        alone = saliency_model(video_features=features[1:, :4], **{key: value[1:] for key, value in text.items()})
        raw = saliency_model(**random_batch(tokenizer, batch_size=3))
        without_head = model(video_features=features, video_mask=mask, **text)
    assert out.saliency_logits.shape == out.saliency_scores.shape == (2, 6)
    assert raw.saliency_logits.shape == (3, 4)  # one per clip of pixel_values_videos
    assert torch.isneginf(out.saliency_logits[1, 4:]).all() and torch.isfinite(out.saliency_logits[mask.bool()]).all()
    assert (out.saliency_scores[1, 4:] == 0).all()
    torch.testing.assert_close(out.saliency_scores, out.saliency_logits.sigmoid())
    # padded clips change nothing: not their values, not their presence
    assert torch.equal(garbage.saliency_logits, out.saliency_logits)
    torch.testing.assert_close(alone.saliency_logits[0], out.saliency_logits[1, :4], rtol=0, atol=1e-6)
    # the saliency head leaves the moments alone, and a model without it has no saliency
    assert without_head.saliency_logits is None and without_head.saliency_scores is None
    assert out.loss is None and out.loss_moment is None and out.loss_saliency is None


def test_saliency_loss_is_bce_over_labelled_real_clips():
    logits = torch.tensor([[0.5, -1.0, 2.0, float("-inf")], [1.5, 0.0, -0.5, 3.0]])
    labels = torch.tensor([[1.0, 0.25, float("nan"), 0.5], [0.0, 1.0, 0.75, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    # the labelled real clips: (0, 0), (0, 1), (1, 0), (1, 1), (1, 2)
    terms = [
        -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
        for x, y in [(0.5, 1.0), (-1.0, 0.25), (1.5, 0.0), (0.0, 1.0), (-0.5, 0.75)]
    ]
    assert saliency_loss(logits, labels, mask).item() == pytest.approx(sum(terms) / 5, rel=1e-6)
    # no labelled clip: 0, still attached to the logits
    logits = logits.clone().requires_grad_()
    empty = saliency_loss(logits, torch.full_like(labels, float("nan")), mask)
    empty.backward()
    assert empty.item() == 0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_joint_loss_weights_the_saliency_term(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(
        grounding_config(grounding_saliency_head=True, grounding_saliency_loss_weight=0.5)
    ).eval()
    features, mask = _padded_features(model)
    inputs = dict(video_features=features, video_mask=mask, video_durations=torch.tensor([6.0, 4.0]),
                  **text_inputs(tokenizer, ["a dog runs", "a red square"]))
    targets = torch.tensor([[1.0, 3.0], [0.0, 2.0]])
    labels = torch.tensor([[0.0, 1.0, 1.0, 0.5, 0.0, float("nan")], [1.0, 1.0, 0.0, 0.0, 9.0, 9.0]])
    with torch.no_grad():
        both = model(**inputs, target_moments=targets, saliency_labels=labels)
        moments_only = model(**inputs, target_moments=targets)
        saliency_only = model(**inputs, saliency_labels=labels)
    expected = saliency_loss(both.saliency_logits, labels, mask.bool())
    torch.testing.assert_close(both.loss_saliency, expected)
    torch.testing.assert_close(both.loss, both.loss_moment + 0.5 * both.loss_saliency)
    assert moments_only.loss_saliency is None and torch.equal(moments_only.loss, both.loss_moment)
    assert saliency_only.loss_moment is None and torch.equal(saliency_only.loss, 0.5 * both.loss_saliency)


def test_saliency_labels_are_checked(saliency_model, model, tokenizer):
    features, mask = _padded_features(saliency_model)
    inputs = dict(video_features=features, video_mask=mask, **text_inputs(tokenizer, ["a dog runs", "a red square"]))
    with pytest.raises(ValueError, match="no saliency head: build it with grounding_saliency_head=True"):
        model(**inputs, saliency_labels=torch.zeros(2, 6))
    with pytest.raises(ValueError, match=r"saliency_labels must have shape \(2, 6\)"):
        saliency_model(**inputs, saliency_labels=torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\] .*saliency_labels\[1, 2\] = 2.0"):
        saliency_model(**inputs, saliency_labels=torch.tensor([[0.0] * 6, [0, 0, 2.0, 0, 0, 0]]))


def test_gradients_reach_the_saliency_head_and_the_encoder(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(grounding_config(grounding_saliency_head=True)).train()
    labels = torch.tensor([[0.0, 1.0, 0.5, 0.0]] * 2)
    model(**random_batch(tokenizer, batch_size=2), saliency_labels=labels).loss.backward()
    for name, parameter in model.saliency_head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for tower in (model.locvtp.vision_model, model.locvtp.text_model, model.locvtp.visual_projection):
        assert any(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in tower.parameters())

    model.zero_grad(set_to_none=True)
    model.freeze_towers(vision=True, text=True)
    assert model.config.grounding_freeze_encoder and not model.locvtp.training and model.saliency_head.training
    model(**random_batch(tokenizer, batch_size=2), saliency_labels=labels).loss.backward()
    assert all(parameter.grad is None for parameter in model.locvtp.parameters())
    assert all(parameter.grad is not None for parameter in model.saliency_head.parameters())


def test_the_saliency_head_learns_which_clips_are_marked(tokenizer):
    """Clip features with a moment marked on feature 0 (as for the 2D map) and labels 1 inside it, 0 outside."""
    torch.manual_seed(0)
    model = LocVTPForTemporalGrounding(
        grounding_config(grounding_hidden_size=32, grounding_freeze_encoder=True, grounding_saliency_head=True)
    )
    optimizer = torch.optim.AdamW(model.saliency_head.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def batch(size, generator):
        inputs = _marked_moment_batch(tokenizer, size, generator)
        times = (torch.arange(inputs["video_features"].shape[1]) + 0.5) * 0.5
        start, end = inputs.pop("target_moments").unbind(-1)
        inputs["saliency_labels"] = ((times >= start[:, None]) & (times < end[:, None])).float()
        return inputs

    model.train()
    losses = []
    for _ in range(40):
        loss = model(**batch(16, generator)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    test = batch(32, torch.Generator().manual_seed(123))
    with torch.no_grad():
        out = model.eval()(**test)
    real, inside = test["video_mask"], test["saliency_labels"].bool()
    assert out.saliency_scores[inside & real].mean() > 0.8 and out.saliency_scores[~inside & real].mean() < 0.2


def test_a_saliency_head_is_saved_and_loaded(saliency_model, tokenizer, tmp_path):
    saliency_model.save_pretrained(tmp_path)
    reloaded, info = AutoModelForVideoTemporalGrounding.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and reloaded.config.grounding_saliency_head
    batch = random_batch(tokenizer, batch_size=2)
    with torch.no_grad():
        assert torch.equal(saliency_model(**batch).saliency_logits, reloaded(**batch).saliency_logits)
    # a checkpoint without the head gets a new one when asked for it
    LocVTPForTemporalGrounding(grounding_config()).save_pretrained(tmp_path / "without")
    _, info = LocVTPForTemporalGrounding.from_pretrained(
        tmp_path / "without", grounding_saliency_head=True, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {f"saliency_head.{name}" for name in saliency_model.saliency_head.state_dict()}


def test_post_processing_returns_saliency_with_the_clip_times(world_videos, processor, saliency_model, model):
    paths, world = world_videos
    inputs = processor(videos=paths, text=["a red square", "the blue ball jumps"], task="grounding",
                       return_tensors="pt")
    with torch.no_grad():
        outputs = saliency_model(**inputs)
    plain = processor.post_process_grounding(outputs, top_k=3)
    results = processor.post_process_grounding(outputs, top_k=3, return_saliency=True)
    assert [result["moments"] for result in results] == plain
    for index, (result, video) in enumerate(zip(results, world.videos("test"))):
        num_clips = int(inputs["clip_mask"][index].sum())
        # the processor's clips cut the video in equal segments, and each clip's time span is its segment
        segment = video.duration / num_clips
        expected_times = [[t * segment, (t + 1) * segment] for t in range(num_clips)]
        assert np.allclose(result["saliency"]["times"], expected_times, atol=1e-4)
        spans = inputs["clip_spans"][index, :num_clips]
        times = torch.tensor(result["saliency"]["times"])
        assert ((times[:, 0] <= spans[:, 0] + 1e-5) & (spans[:, 1] <= times[:, 1] + 1e-5)).all()
        assert result["saliency"]["scores"] == outputs.saliency_scores[index, :num_clips].tolist()

    # precomputed features without clip spans: the clips cut the duration evenly
    features, mask = _padded_features(saliency_model)
    text = text_inputs(processor.tokenizer, ["a dog runs", "a red square"])
    with torch.no_grad():
        from_features = saliency_model(video_features=features, video_mask=mask, **text)
    results = grounding_moments(from_features, video_durations=[12.0, 6.0], return_saliency=True)
    saliency = [result["saliency"] for result in results]
    assert saliency[0]["times"] == [[2.0 * t, 2.0 * (t + 1)] for t in range(6)]
    assert saliency[1]["times"] == [[1.5 * t, 1.5 * (t + 1)] for t in range(4)]
    assert len(saliency[1]["scores"]) == 4
    with torch.no_grad():
        no_head = model(video_features=features, video_mask=mask, video_durations=torch.tensor([12.0, 6.0]), **text)
    with pytest.raises(ValueError, match="carry no saliency_scores.*zero_shot_saliency"):
        processor.post_process_grounding(no_head, return_saliency=True)


def test_pipeline_returns_saliency_on_request(world_videos, processor, saliency_model, model, caplog):
    paths, _ = world_videos
    queries = ["a red square", "the blue ball jumps"]
    grounder = pipeline("video-temporal-grounding", model=saliency_model, processor=processor, device="cpu")
    results = grounder(paths[0], queries=queries, top_k=3, return_saliency=True)
    assert [result["moments"] for result in results] == grounder(paths[0], queries=queries, top_k=3)
    inputs = processor(videos=[paths[0]] * 2, text=queries, task="grounding", return_tensors="pt")
    with torch.no_grad():
        expected = processor.post_process_grounding(saliency_model(**inputs), top_k=3, return_saliency=True)
    for result, reference in zip(results, expected):
        assert result["saliency"]["times"] == reference["saliency"]["times"]
        assert result["saliency"]["scores"] == pytest.approx(reference["saliency"]["scores"], abs=1e-6)
    single = grounder(paths[0], queries=queries[0], top_k=3, return_saliency=True)
    assert set(single) == {"moments", "saliency"} and single["saliency"] == results[0]["saliency"]

    # a model with a moment head but no saliency head: the zero-shot saliency, with a warning
    with caplog.at_level("WARNING"):
        fallback = pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu")(
            paths[0], queries=queries, top_k=3, return_saliency=True
        )
    assert "no saliency head" in caplog.text
    with torch.no_grad():
        out = model(**inputs)
    cosine = zero_shot_saliency(out.video_features, out.text_embeds, out.video_mask)
    for index, result in enumerate(fallback):
        assert result["saliency"]["scores"] == pytest.approx(cosine[index].tolist(), abs=1e-6)
        assert result["saliency"]["times"] == expected[index]["saliency"]["times"]


def test_zero_shot_pipeline_returns_the_zero_shot_saliency(world_videos, processor):
    paths, _ = world_videos
    queries = ["a red square", "the blue ball jumps"]
    torch.manual_seed(0)
    encoder = LocVTPModel(grounding_config()).eval()
    grounder = pipeline("video-temporal-grounding", model=encoder, processor=processor, device="cpu")
    results = grounder(paths[0], queries=queries, top_k=3, return_saliency=True)
    assert [result["moments"] for result in results] == grounder(paths[0], queries=queries, top_k=3)
    inputs = processor(videos=[paths[0]], task="grounding", return_tensors="pt")
    with torch.no_grad():
        clips = encoder.get_clip_features(inputs["pixel_values_videos"], inputs["clip_mask"])[0]
        text = encoder.get_text_features(**processor(text=queries, return_tensors="pt")).pooler_output
    for query_embed, result in zip(text, results):
        by_hand = [float(clip @ query_embed / (clip.norm() * query_embed.norm())) for clip in clips]
        assert result["saliency"]["scores"] == pytest.approx(by_hand, abs=1e-6)
        assert len(result["saliency"]["times"]) == len(clips)


# ----------------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_get_clear_errors(model, processor, tokenizer):
    batch = random_batch(tokenizer, batch_size=2)
    text = {key: value for key, value in batch.items() if key != "pixel_values_videos"}
    durations = torch.tensor([10.0, 20.0])
    features = torch.randn(2, 5, model.config.projection_dim)

    tiny = np.zeros((4, 40, 48, 3), dtype=np.uint8)  # 0.4 s at 10 fps
    with pytest.raises(ValueError, match=r"videos\[1\] lasts 0.400 s, shorter than one grounding clip"):
        processor(videos=[np.zeros((30, 40, 48, 3), dtype=np.uint8), tiny], task="grounding", video_fps=10.0)
    with pytest.raises(ValueError, match=r"target_moments\[1\] = \(15.000, 25.000\) s lies outside its video"):
        model(**batch, video_durations=durations, target_moments=torch.tensor([[1.0, 2.0], [15.0, 25.0]]))
    with pytest.raises(ValueError, match=r"target_moments\[0\] = \(3.0, 2.0\) s is not a moment"):
        model(**batch, video_durations=durations, target_moments=torch.tensor([[3.0, 2.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="target_moments are in seconds: give video_durations"):
        model(**batch, target_moments=torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="have 7 features per clip but .* projection_dim=16"):
        model(video_features=torch.randn(2, 5, 7), **text)
    with pytest.raises(ValueError, match=r"Got 2 videos \(video_features\) and 1 queries"):
        model(video_features=features, **{key: value[:1] for key, value in text.items()})
    with pytest.raises(ValueError, match=r"video_mask must have shape \(2, 5\)"):
        model(video_features=features, video_mask=torch.ones(2, 4), **text)
    with pytest.raises(ValueError, match=r"video_mask marks no clip of video\(s\) \[1\]"):
        model(video_features=features, video_mask=torch.tensor([[1, 1, 0, 0, 0], [0] * 5]), **text)
    with pytest.raises(ValueError, match="either as pixel_values_videos .* or as video_features"):
        model(**batch, video_features=features)
    with pytest.raises(ValueError, match=r"video_durations must be positive seconds; video\(s\) \[0\]"):
        model(video_features=features, video_durations=torch.tensor([0.0, 3.0]), **text)
    with pytest.raises(ValueError, match=r"text\[1\] is empty"):
        processor(videos=[np.zeros((30, 40, 48, 3), dtype=np.uint8)] * 2, text=["a dog runs", " "],
                  task="grounding", video_fps=10.0)


# ---------------------------------------------------------------------------------------------------- real video


def test_a_real_charades_video(real_data, processor, model):
    path = str(real_data / "videos" / "charades_example.mp4")
    inputs = processor(videos=[path], text=["a person opens the door"], task="grounding", return_tensors="pt")
    assert inputs["clip_mask"].shape == (1, 30)  # 30.7 s at one clip per second
    assert inputs["video_durations"].item() == pytest.approx(30.7, abs=0.05)
    with torch.no_grad():
        moments = processor.post_process_grounding(model(**inputs), top_k=5)[0]
    assert len(moments) == 5 and all(0 <= m["start"] < m["end"] <= 30.8 for m in moments)


def test_pipeline_batch_size_and_positional_queries(world_videos, processor, model, caplog):
    paths, _ = world_videos
    grounder = pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu")
    expected = grounder(paths, queries=["a red square", "the blue ball jumps"], top_k=2)
    # the videos of a batch differ in length: each is one forward pass whatever batch_size says
    with caplog.at_level("WARNING"):
        assert grounder(paths, queries=["a red square", "the blue ball jumps"], top_k=2, batch_size=2) == expected
    assert "batch_size=2 is ignored" in caplog.text
    batched = pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu", batch_size=2)
    assert batched(paths, queries=["a red square", "the blue ball jumps"], top_k=2) == expected
    assert grounder(paths[0], "a red square", top_k=2) == expected[0][0]  # the queries as the second argument


def test_pipeline_without_a_model_says_what_to_pass():
    with pytest.raises(ValueError, match="video-temporal-grounding pipeline has no default model: pass model="):
        pipeline("video-temporal-grounding")


def test_pipeline_grounds_zero_shot_with_a_model_started_from_clip(world_videos, tmp_path):
    from test_modeling import _tiny_clip, _tiny_clip_tokenizer

    paths, _ = world_videos
    tokenizer = _tiny_clip_tokenizer()
    model = LocVTPModel.from_clip(_tiny_clip(tokenizer), num_clips=4, frames_per_clip=2).eval()
    video_processor = LocVTPVideoProcessor(num_clips=4, frames_per_clip=2, size={"shortest_edge": IMAGE_SIZE},
                                           crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LocVTPProcessor(video_processor=video_processor, tokenizer=tokenizer)
    grounder = pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu")
    moments = grounder(paths[0], "the red square slides", top_k=2)
    assert grounder.zero_shot and 1 <= len(moments) <= 2

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    from_folder = pipeline("video-temporal-grounding", model=str(tmp_path), device="cpu")
    assert type(from_folder.processor.tokenizer).__name__ == "CLIPTokenizer"
    reloaded = from_folder(paths[0], "the red square slides", top_k=2)
    assert [(m["start"], m["end"]) for m in reloaded] == [(m["start"], m["end"]) for m in moments]


def test_pipeline_reads_video_urls_and_its_output_goes_to_the_evaluate_module(world_videos, processor, model):
    paths, _ = world_videos
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(Path(paths[0]).parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{Path(paths[0]).name}"
        grounder = pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu")
        queries = ["a red square", "the blue ball jumps"]
        from_url = grounder(url, queries=queries, top_k=3)
        assert from_url == grounder(paths[0], queries=queries, top_k=3)
    finally:
        server.shutdown()

    # the evaluate module takes the pipeline's own output, as it takes [start, end, score] rows
    references = [[[0.0, 4.0]], [[2.0, 8.0]]]
    metric = metrics.load("temporal_grounding")
    rows = [[[moment["start"], moment["end"], moment["score"]] for moment in moments] for moments in from_url]
    assert metric.compute(predictions=from_url, references=references) == metric.compute(
        predictions=rows, references=references
    )
