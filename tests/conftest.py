"""The test environment (offline Hub, private cache, one thread) and the shared fixtures: the tiny tokenizer and
processor of `testing_utils`' configs, and the real-data folder."""

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

from testing_utils import FRAMES_PER_CLIP, IMAGE_SIZE, NUM_CLIPS, TEXT_CONFIGS, WORDS  # noqa: E402

from locvtp_hf import LocVTPProcessor, LocVTPVideoProcessor  # noqa: E402


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
