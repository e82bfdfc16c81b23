"""TimeSformer's scaled-dot-product attention path (`LocVTPTimesformerSdpaSelfAttention`) against transformers' eager
attention, and the training options that make the GPU step cheaper: activation checkpointing and the fused AdamW."""

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from testing_utils import make_config
from transformers import BertModel, TimesformerModel
from transformers.modeling_layers import GradientCheckpointingLayer

from locvtp_hf import LocVTPModel
from locvtp_hf.modeling_locvtp import (
    LocVTPForPreTraining,
    LocVTPTimesformerModel,
    LocVTPTimesformerSdpaSelfAttention,
)
from locvtp_hf.training import TrainingArguments, train
from locvtp_hf.training.optimization import adamw_optimizer


NUM_CLIPS = FRAMES = 2
BATCH_SIZE = 3
# float32: the two paths sum in another order; bf16 keeps 8 bits: a few of its rounding steps
FLOAT32 = {"rtol": 1e-4, "atol": 1e-5}
BF16_RELATIVE_ERROR = 1e-2


def tiny_config():
    """TimeSformer (32 px, 2 frames, width 32, depth 2, divided space-time attention) and BERT, without dropout."""
    return make_config("timesformer", num_clips=NUM_CLIPS, frames_per_clip=FRAMES)


def batch(tokenizer, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    text = tokenizer(["a man opens the door", "the red square slides to the left", "a dog runs"], padding=True,
                     return_special_tokens_mask=True, return_tensors="pt")
    pixels = torch.randn(BATCH_SIZE, NUM_CLIPS, FRAMES, 3, 32, 32, generator=generator)
    return {"pixel_values_videos": pixels, **text}


@pytest.fixture
def sdpa_calls(monkeypatch):
    """The query shapes of the calls of `F.scaled_dot_product_attention`."""
    calls = []
    original = F.scaled_dot_product_attention

    def counting(query, *args, **kwargs):
        calls.append(tuple(query.shape))
        return original(query, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    return calls


def loss_and_gradients(model, inputs: dict, precision: str = "fp32") -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(**inputs).loss
    loss.backward()
    return loss.detach().float(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_the_timesformer_tower_uses_sdpa_by_default_and_eager_when_asked(tmp_path):
    model = LocVTPModel(tiny_config())
    assert isinstance(model.vision_model, LocVTPTimesformerModel)
    assert model.config.vision_config._attn_implementation == "sdpa"
    assert model.vision_model.config is model.config.vision_config
    attentions = [m for m in model.vision_model.modules() if isinstance(m, LocVTPTimesformerSdpaSelfAttention)]
    assert len(attentions) == 4  # a spatial and a temporal attention per layer
    # every attention reads the implementation from the config that `set_attn_implementation` changes
    assert all(attention.config is model.config.vision_config for attention in attentions)

    model.save_pretrained(tmp_path)
    for requested, vision, text in (
        ("eager", "eager", "eager"),
        ("sdpa", "sdpa", "sdpa"),
        ({"vision_config": "eager", "text_config": "sdpa"}, "eager", "sdpa"),
    ):
        loaded = LocVTPModel.from_pretrained(tmp_path, attn_implementation=requested)
        assert (loaded.vision_model.config._attn_implementation, loaded.text_model.config._attn_implementation) == (
            vision, text
        ), requested
    model.set_attn_implementation("eager")
    assert model.vision_model.config._attn_implementation == "eager"
    model.set_attn_implementation({"vision_config": "sdpa"})
    assert model.vision_model.config._attn_implementation == "sdpa"


def test_the_sdpa_tower_starts_from_the_very_weights_of_transformers_tower():
    """Same seed, same initial weights: the swap draws no random numbers and adds or renames no parameter."""
    config = tiny_config().vision_config
    torch.manual_seed(0)
    reference = TimesformerModel(config).state_dict()
    torch.manual_seed(0)
    state = LocVTPTimesformerModel(config).state_dict()
    assert list(state) == list(reference)
    for name, value in reference.items():
        assert torch.equal(state[name], value), name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_sdpa_equals_eager_in_the_loss_and_every_gradient(tokenizer, sdpa_calls, precision):
    torch.manual_seed(0)
    model = LocVTPForPreTraining(tiny_config()).train()
    inputs = batch(tokenizer)
    model.set_attn_implementation("eager")  # the text tower stays eager: the SDPA calls below are TimeSformer's
    eager_loss, eager_gradients = loss_and_gradients(model, inputs, precision)
    assert sdpa_calls == []
    model.set_attn_implementation({"vision_config": "sdpa"})
    sdpa_loss, sdpa_gradients = loss_and_gradients(model, inputs, precision)
    # per layer, `[batch, heads, tokens, head_dim]`: the spatial attention of every frame (4 patches and the class
    # token), the temporal attention of every patch (over the frames)
    frames, patches = BATCH_SIZE * NUM_CLIPS * FRAMES, BATCH_SIZE * NUM_CLIPS * 4
    assert sorted(sdpa_calls) == sorted([(frames, 2, 5, 16), (patches, 2, FRAMES, 16)] * 2)

    vision_gradients = [name for name in eager_gradients if name.startswith("locvtp.vision_model.")]
    assert len(vision_gradients) > 20 and all(eager_gradients[name].abs().sum() > 0 for name in vision_gradients)
    if precision == "fp32":
        torch.testing.assert_close(sdpa_loss, eager_loss, **FLOAT32)
        for name, gradient in eager_gradients.items():
            torch.testing.assert_close(sdpa_gradients[name], gradient, **FLOAT32, msg=name)
    else:
        # bf16 tolerance: SDPA under autocast is as close to the float32 result as eager attention under autocast is
        model.set_attn_implementation("eager")
        reference_loss, reference_gradients = loss_and_gradients(model, inputs, "fp32")
        torch.testing.assert_close(sdpa_loss, eager_loss, rtol=BF16_RELATIVE_ERROR, atol=0)
        for name, reference in reference_gradients.items():
            sdpa_error = (sdpa_gradients[name].float() - reference).norm()
            eager_error = (eager_gradients[name].float() - reference).norm()
            assert sdpa_error <= 2 * eager_error + 1e-6 * reference.norm(), (name, sdpa_error, eager_error)


def test_a_checkpoint_of_one_implementation_loads_into_the_other(tmp_path, tokenizer):
    torch.manual_seed(0)
    inputs = batch(tokenizer)
    # the structure the package built before the SDPA path: transformers' own TimesformerModel
    config = tiny_config()
    before = LocVTPModel(config, vision_model=TimesformerModel(config.vision_config)).eval()
    assert before.config.vision_config._attn_implementation == "eager"
    before.save_pretrained(tmp_path / "before")
    eager = LocVTPModel.from_pretrained(tmp_path / "before", attn_implementation="eager").eval()
    eager.save_pretrained(tmp_path / "eager")

    reference_keys = list(before.state_dict())
    with torch.no_grad():
        expected = before(**inputs)
    for folder in ("before", "eager"):
        model, info = LocVTPModel.from_pretrained(tmp_path / folder, attn_implementation="sdpa",
                                                  output_loading_info=True)
        assert model.vision_model.config._attn_implementation == "sdpa"
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        assert list(model.state_dict()) == reference_keys
        with torch.no_grad():
            outputs = model.eval()(**inputs)
        for name in ("clip_embeds", "video_embeds", "text_embeds", "logits_per_video"):
            torch.testing.assert_close(outputs[name], expected[name], **FLOAT32, msg=name)
    model.save_pretrained(tmp_path / "sdpa")
    reloaded = LocVTPModel.from_pretrained(tmp_path / "sdpa", attn_implementation="eager")
    assert reloaded.vision_model.config._attn_implementation == "eager"
    for name, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], value), name


def test_a_pretrained_timesformer_tower_gets_the_sdpa_path(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    vision = TimesformerModel(config.vision_config)
    vision.save_pretrained(tmp_path / "timesformer")
    BertModel(config.text_config, add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    model = LocVTPModel.from_vision_text_pretrained(
        str(tmp_path / "timesformer"), str(tmp_path / "bert"), projection_dim=16, num_clips=NUM_CLIPS
    )
    assert isinstance(model.vision_model, LocVTPTimesformerModel)
    assert model.config.vision_config._attn_implementation == "sdpa"
    state = model.vision_model.state_dict()
    assert list(state) == list(vision.state_dict())
    for name, value in vision.state_dict().items():
        assert torch.equal(state[name], value), name
    # the implementation each tower is loaded with is kept, whatever it is
    eager = LocVTPModel.from_vision_text_pretrained(
        str(tmp_path / "timesformer"), str(tmp_path / "bert"), projection_dim=16, num_clips=NUM_CLIPS,
        vision_attn_implementation="eager", text_attn_implementation="eager",
    )
    assert eager.config.vision_config._attn_implementation == eager.config.text_config._attn_implementation == "eager"
    assert eager.vision_model.config._attn_implementation == eager.text_model.config._attn_implementation == "eager"


def test_output_attentions_still_returns_the_attention_probabilities(tokenizer):
    model = LocVTPModel(tiny_config()).eval()
    pixels = batch(tokenizer)["pixel_values_videos"]
    with torch.no_grad():
        outputs = model.get_video_features(pixels, output_attentions=True)
        model.set_attn_implementation("eager")
        eager = model.get_video_features(pixels, output_attentions=True)
    # one per layer: the spatial attention of every frame of every clip, over 4 patches and the class token
    assert len(outputs.attentions) == 2
    for attention, expected in zip(outputs.attentions, eager.attentions):
        assert attention.shape == (BATCH_SIZE * NUM_CLIPS * FRAMES, 2, 5, 5)
        torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))
        torch.testing.assert_close(attention, expected, **FLOAT32)
    torch.testing.assert_close(outputs.clip_embeds, eager.clip_embeds, **FLOAT32)


@pytest.fixture
def accelerator():
    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_gradient_checkpointing_trains_to_the_same_losses_and_weights(tokenizer, tmp_path, accelerator):
    """`--gradient_checkpointing` recomputes the towers' activations in the backward pass: same losses, same updates."""
    inputs = batch(tokenizer)
    samples = [{name: value[index] for name, value in inputs.items()} for index in range(BATCH_SIZE)] * 2
    dataloader = torch.utils.data.DataLoader(samples, batch_size=2)

    def loss_function(model, micro_batch, step):
        return {"loss": model(**micro_batch).loss}

    def run(gradient_checkpointing: bool):
        torch.manual_seed(0)
        model = LocVTPForPreTraining(tiny_config())
        initial = {name: value.clone() for name, value in model.state_dict().items()}
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_batch_size=2, warmup_steps=0,
                                 checkpointing_steps=0, gradient_checkpointing=gradient_checkpointing)
        result = train(accelerator, model, dataloader, loss_function, args, progress=False)
        layers = [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]
        assert {type(layer).__name__ for layer in layers} == {"TimesformerLayer", "BertLayer"}
        assert not torch.equal(model.state_dict()["locvtp.vision_model.encoder.layer.0.attention.attention.qkv.weight"],
                               initial["locvtp.vision_model.encoder.layer.0.attention.attention.qkv.weight"])
        return result.losses, model.state_dict(), [layer.gradient_checkpointing for layer in layers]

    losses, weights, checkpointed = run(False)
    assert not any(checkpointed)
    checkpointed_losses, checkpointed_weights, checkpointed = run(True)
    assert all(checkpointed)
    torch.testing.assert_close(checkpointed_losses, losses, rtol=1e-6, atol=0)
    for name, value in weights.items():
        torch.testing.assert_close(checkpointed_weights[name], value, **FLOAT32, msg=name)


def test_the_optimizer_is_fused_only_on_cuda():
    model = LocVTPForPreTraining(tiny_config())
    assert not adamw_optimizer(model, 1e-3, 0.05).defaults["fused"]  # CPU: the update is unchanged
    assert adamw_optimizer(model, 1e-3, 0.05, fused=True).defaults["fused"]
