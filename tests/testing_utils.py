"""Helpers shared by several test modules: tiny configs (well under 1M parameters, 32 px, 4 frames), the tiny
tokenizer's words and random batches. Fixtures and the test environment (offline Hub, one thread) live in
conftest.py, which pytest loads before any test module imports this one."""

import torch

from locvtp_hf import LocVTPConfig


# Comparing float32 results computed in another process: the same weights and inputs, but the other process may pick
# other kernels or thread splits, so sums round differently. Logits are scaled by the logit scale (up to 100), so the
# tolerance must be relative; a wrong weight or input changes results by orders of magnitude more.
CROSS_PROCESS_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}

IMAGE_SIZE = 32
NUM_CLIPS = 4
FRAMES_PER_CLIP = 4

_VISION_COMMON = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=IMAGE_SIZE,
    patch_size=16,
)
VISION_CONFIGS = {
    "timesformer": dict(model_type="timesformer", **_VISION_COMMON),
    "videomae": dict(model_type="videomae", tubelet_size=2, **_VISION_COMMON),
    "vivit": dict(model_type="vivit", tubelet_size=[2, 16, 16], **_VISION_COMMON),
    "vit": dict(model_type="vit", **_VISION_COMMON),
    "clip_vision_model": dict(model_type="clip_vision_model", **_VISION_COMMON),
}
TEXT_CONFIGS = {
    "bert": dict(
        model_type="bert", vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ),
    "distilbert": dict(
        model_type="distilbert", vocab_size=64, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
    ),
}

WORDS = (
    "a the an man woman person dog cat car door fridge opens closes runs walks sits jumps red blue green "
    "square circle box ball slides moves grows shrinks blinks to left right up down and then in on of is"
).split()


def make_config(vision: str = "timesformer", text: str = "bert", **kwargs) -> LocVTPConfig:
    """A tiny LocVTP config for the named backbones; `kwargs` override LocVTP fields."""
    values = dict(projection_dim=16, num_clips=NUM_CLIPS, frames_per_clip=FRAMES_PER_CLIP)
    values.update(kwargs)
    return LocVTPConfig(vision_config=dict(VISION_CONFIGS[vision]), text_config=dict(TEXT_CONFIGS[text]), **values)


def random_batch(tokenizer, batch_size: int = 3, seed: int = 0) -> dict:
    """Random pixels and real sentences of different lengths, as the processor returns them."""
    generator = torch.Generator().manual_seed(seed)
    sentences = ["a man opens the door", "the red square slides to the left and then grows", "a dog runs",
                 "a woman sits", "the blue ball jumps up and down"][:batch_size]
    text = tokenizer(sentences, padding=True, return_special_tokens_mask=True, return_tensors="pt")
    pixels = torch.randn(batch_size, NUM_CLIPS, FRAMES_PER_CLIP, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"pixel_values_videos": pixels, **text}
