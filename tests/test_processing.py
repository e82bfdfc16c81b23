import logging

import numpy as np
import pytest
import torch
from testing_utils import FRAMES_PER_CLIP, IMAGE_SIZE, NUM_CLIPS, make_config
from transformers import AutoProcessor, AutoVideoProcessor, pipeline

from locvtp_hf import (
    LocVTPForTemporalGrounding,
    LocVTPModel,
    LocVTPProcessor,
    LocVTPVideoProcessor,
    VideoDecodingError,
)
from locvtp_hf.modeling_locvtp import LocVTPForPreTraining


def _frames(num_frames=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (num_frames, 48, 64, 3), dtype=np.uint8)


def test_processor_output_feeds_the_model(processor):
    inputs = processor(
        videos=[_frames(), _frames(seed=1)],
        text=["a man opens the door", "a dog runs"],
        spans=[(0.2, 1.0), None],
        video_fps=30.0,
        return_tensors="pt",
    )
    assert inputs["pixel_values_videos"].shape == (2, NUM_CLIPS, FRAMES_PER_CLIP, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert inputs["clip_spans"].shape == (2, NUM_CLIPS, 2)
    assert inputs["clip_spans"][0].min() >= 0.2 - 1e-6 and inputs["clip_spans"][0].max() <= 1.0 + 1e-6
    assert set(inputs) >= {"input_ids", "attention_mask", "special_tokens_mask", "token_type_ids"}

    model = LocVTPForPreTraining(make_config())
    out = model(**inputs)
    assert torch.isfinite(out.loss)
    assert torch.equal(out.clip_spans, inputs["clip_spans"])


def test_save_and_auto_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    make_config().save_pretrained(tmp_path)  # a checkpoint folder holds the model config too
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, LocVTPProcessor)
    assert isinstance(loaded.video_processor, LocVTPVideoProcessor)
    assert isinstance(AutoVideoProcessor.from_pretrained(tmp_path), LocVTPVideoProcessor)
    assert loaded.max_text_length == processor.max_text_length
    kwargs = dict(videos=[_frames()], text=["a red square slides to the left"], return_tensors="pt")
    expected, actual = processor(**kwargs), loaded(**kwargs)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_empty_text_is_rejected(processor):
    with pytest.raises(ValueError, match=r"text\[1\] is empty"):
        processor(videos=[_frames(), _frames()], text=["a dog runs", "   "])
    with pytest.raises(ValueError, match="text is an empty list: give at least one sentence"):
        processor(text=[], return_tensors="pt")


def test_videos_and_texts_must_pair_up_with_spans_training_or_grounding(processor):
    videos = [_frames(), _frames(seed=1)]
    for kwargs, reason in (
        (dict(spans=[None, (0.2, 1.0)]), "spans"),
        (dict(training=True), "training=True"),
        (dict(task="grounding"), "task='grounding'"),
    ):
        with pytest.raises(ValueError, match=f"Got 2 videos and 1 texts: with {reason}, text i goes with video i"):
            processor(videos=videos, text=["a dog runs"], video_fps=10.0, **kwargs)


def test_any_number_of_texts_and_videos_to_score(processor):
    labels = ["a dog runs", "a man opens the door", "the red square slides"]
    inputs = processor(videos=[_frames(), _frames(seed=1)], text=labels, video_fps=10.0, return_tensors="pt")
    assert inputs["pixel_values_videos"].shape[0] == 2 and inputs["input_ids"].shape[0] == 3
    with torch.no_grad():
        out = LocVTPModel(make_config()).eval()(**inputs)
    assert out.logits_per_video.shape == (2, 3)


def test_overlong_text_is_truncated_with_a_warning(processor, caplog):
    long_text = " ".join(["the red square slides to the left"] * 5)
    with caplog.at_level(logging.WARNING):
        inputs = processor(text=["a dog runs", long_text], return_tensors="pt")
    assert inputs["input_ids"].shape[1] == processor.max_text_length
    assert "text[1]" in caplog.text and "truncated" in caplog.text


def test_non_finite_video_fps_is_refused(processor):
    with pytest.raises(ValueError, match=r"video_fps for videos\[0\] must be a positive, finite number .* got inf"):
        processor(videos=[_frames()], text=["a dog runs"], video_fps=float("inf"))


def test_text_only_and_single_video_calls(processor):
    assert processor(text="a dog runs", return_tensors="pt")["input_ids"].shape[0] == 1
    assert processor(videos=_frames(), return_tensors="pt")["pixel_values_videos"].shape[0] == 1


def test_real_videos_through_the_processor(processor, real_data):
    videos = real_data / "videos"
    names = ["bigbuckbunny.mp4", "flipping_a_pancake.mkv", "carphone_distorted.mp4", "charades_example.mp4"]
    inputs = processor(
        videos=[str(videos / name) for name in names],
        text=["a rabbit", "flipping a pancake", "a man on the phone", "a person opens a door"],
        spans=[None, None, (0.5, 3.5), (3.0, 9.5)],
        return_tensors="pt",
    )
    assert inputs["pixel_values_videos"].shape == (4, NUM_CLIPS, FRAMES_PER_CLIP, 3, IMAGE_SIZE, IMAGE_SIZE)
    # the four clips of the span (3.0, 9.5) cover its four segments; their frames sit at sub-interval centres
    spans = inputs["clip_spans"][3]
    sub_interval = (9.5 - 3.0) / NUM_CLIPS / FRAMES_PER_CLIP
    assert 3.0 <= spans[0, 0] < 3.0 + sub_interval and 9.5 - sub_interval < spans[-1, 1] <= 9.5
    assert torch.all(spans[1:, 0] > spans[:-1, 0])
    model = LocVTPForPreTraining(make_config("vit", "distilbert"))
    assert torch.isfinite(model(**inputs).loss)


def test_a_corrupt_video_is_named(processor, real_data):
    good, bad = real_data / "videos" / "bikes.mp4", real_data / "videos" / "corrupted.mp4"
    with pytest.raises(VideoDecodingError, match=r"videos\[1\].*corrupted\.mp4"):
        processor(videos=[str(good), str(bad)], text=["bikes", "broken"])


def test_a_span_outside_the_video_is_named(processor, real_data):
    video = real_data / "videos" / "bikes.mp4"
    with pytest.raises(ValueError, match=r"videos\[0\]"):
        processor(videos=[str(video)], text=["bikes"], spans=[(4.0, 60.0)])
    with pytest.raises(ValueError, match=r"videos\[0\]"):
        processor(videos=[str(video)], text=["bikes"], spans=[(5.0, 5.0)])


@pytest.fixture
def grounder(processor):
    torch.manual_seed(0)
    config = make_config(grounding_hidden_size=16, grounding_num_conv_layers=2, grounding_conv_kernel_size=3)
    model = LocVTPForTemporalGrounding(config).eval()
    return pipeline("video-temporal-grounding", model=model, processor=processor, device="cpu")


def test_pipeline_argument_errors_name_the_argument(grounder):
    video = _frames()  # 4 s at 10 fps: 4 clips
    assert len(grounder(video, queries="a dog runs", video_fps=10.0, clip_chunk_size=3, top_k=2)) == 2
    with pytest.raises(TypeError, match="queries must be a sentence or a list of sentences, got int"):
        grounder(video, queries=123, video_fps=10.0)
    for size in (-1, 0, 2.5):
        with pytest.raises(ValueError, match=rf"clip_chunk_size .* a positive int, got {size}"):
            grounder(video, queries="a dog runs", video_fps=10.0, clip_chunk_size=size)


def test_pipeline_names_the_unreadable_video_of_a_batch(grounder, tmp_path):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(FileNotFoundError, match=r"^videos\[1\]: video file '.*missing\.mp4' does not exist"):
        grounder([_frames(), tmp_path / "missing.mp4"], queries="a dog runs", video_fps=10.0)
    with pytest.raises(VideoDecodingError, match=r"^videos\[2\]: could not open video '.*broken\.mp4'"):
        grounder([_frames(), _frames(seed=1), corrupt], queries="a dog runs", video_fps=10.0)
    with pytest.raises(ValueError, match=r"^videos\[1\] lasts 0\.400 s, shorter than one grounding clip"):
        grounder([_frames(), _frames(num_frames=4)], queries="a dog runs", video_fps=10.0)


def test_mostly_unknown_text_is_warned_about(processor, caplog):
    texts = ["a dog runs", "ein hund rennt", "a dog rennt schnell", "the man zzz opens"]  # 0, 3/3, 2/4, 1/4 unknown
    with caplog.at_level(logging.WARNING):
        processor(text=texts)
    assert "Most word tokens of text[1] (100%) are the unknown token [UNK]" in caplog.text
    assert "text[0]" not in caplog.text and "text[2]" not in caplog.text and "text[3]" not in caplog.text
    assert "tokenizer (BertTokenizer) probably does not match" in caplog.text
