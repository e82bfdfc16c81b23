"""Shared fixtures: tiny configs (well under 1M parameters, 32 px, 4 frames), a tiny tokenizer, offline Hub."""

import os
import tempfile
from pathlib import Path

import pytest


# Offline and with a private cache before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="locvtp-hf-home-")
# One intra-op thread, here and in every subprocess a test starts (they inherit the environment): torch's thread pool
# busy-waits, so two threads per process on a 2-core machine that anything else also uses (another test process, the
# two ranks of a distributed test, a DataLoader worker) slow a test down 10-30x. `LOCVTP_TEST_NUM_THREADS` overrides.
os.environ["OMP_NUM_THREADS"] = os.environ.get("LOCVTP_TEST_NUM_THREADS", "1")
os.environ["MKL_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]

import torch  # noqa: E402
from transformers import BertTokenizer  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from locvtp_hf import LocVTPConfig, LocVTPProcessor, LocVTPVideoProcessor  # noqa: E402


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


@pytest.fixture(scope="session")
def tokenizer():
    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    assert len(vocab) <= TEXT_CONFIGS["bert"]["vocab_size"]
    return BertTokenizer(vocab=vocab)


@pytest.fixture
def processor(tokenizer):
    video_processor = LocVTPVideoProcessor(
        num_clips=NUM_CLIPS,
        frames_per_clip=FRAMES_PER_CLIP,
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    )
    return LocVTPProcessor(video_processor=video_processor, tokenizer=tokenizer, max_text_length=16)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """`$LOCVTP_REAL_DATA` (the shared folder of real videos and annotations); skips when unset."""
    root = os.environ.get("LOCVTP_REAL_DATA")
    if not root:
        pytest.skip("LOCVTP_REAL_DATA is not set: point it at a folder with videos/ and annotations/ to run this test")
    return Path(root)


def random_batch(tokenizer, batch_size: int = 3, seed: int = 0) -> dict:
    """Random pixels and real sentences of different lengths, as the processor returns them."""
    generator = torch.Generator().manual_seed(seed)
    sentences = ["a man opens the door", "the red square slides to the left and then grows", "a dog runs",
                 "a woman sits", "the blue ball jumps up and down"][:batch_size]
    text = tokenizer(sentences, padding=True, return_special_tokens_mask=True, return_tensors="pt")
    pixels = torch.randn(batch_size, NUM_CLIPS, FRAMES_PER_CLIP, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"pixel_values_videos": pixels, **text}
