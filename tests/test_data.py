import json

import pytest
import torch

from locvtp_hf.data import (
    VideoTextCollator,
    VideoTextPairDataset,
    howto100m_rows,
    videofolder_rows,
    webvid_rows,
)
from locvtp_hf.synthetic_world import SyntheticWorld
from locvtp_hf.video_io import VideoDecodingError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Three synthetic videos written as mp4 files with their metadata.jsonl."""
    world = SyntheticWorld(seed=2, num_train=3, size=32)
    return world, world.export(tmp_path_factory.mktemp("world"), "train")


def test_videofolder_rows_match_the_metadata(exported):
    world, folder = exported
    rows = videofolder_rows(folder)
    expected = world.pretraining_pairs("train")
    assert len(rows) == len(expected)
    assert sorted(zip(rows["text"], rows["start"])) == sorted(zip(expected["text"], expected["start"]))
    assert all(path.endswith(".mp4") and (folder / path.split("/")[-1]).exists() for path in rows["video"])


def test_howto100m_rows(tmp_path):
    captions = {"vid_a": {"start": [0.0, 4.5], "end": [4.0, 9.0], "text": ["crack two eggs", "  "]},
                "vid_b": {"start": [1.0], "end": [3.0], "text": ["whisk them"]}}
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    rows = howto100m_rows(tmp_path / "captions.json", "/videos")
    assert rows.to_list() == [  # the empty sentence is dropped
        {"video": "/videos/vid_a.mp4", "start": 0.0, "end": 4.0, "text": "crack two eggs"},
        {"video": "/videos/vid_b.mp4", "start": 1.0, "end": 3.0, "text": "whisk them"},
    ]


def test_webvid_rows(tmp_path):
    (tmp_path / "results.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n"
        "1001,http://example.invalid/a.mp4,PT00H00M12S,006001_006050,Aerial view of a beach \n"
    )
    rows = webvid_rows(tmp_path / "results.csv", "/webvid")
    assert rows.to_list() == [{"video": "/webvid/006001_006050/1001.mp4", "text": "Aerial view of a beach"}]


def test_items_are_the_same_for_the_same_epoch_and_differ_across_epochs(exported, processor):
    world, _ = exported
    rows = world.pretraining_pairs("train").rename_column("video_id", "video")
    dataset = VideoTextPairDataset(rows, processor, load_video=world.render, video_fps=world.fps, seed=3)
    first = dataset[1]
    assert torch.equal(first["pixel_values_videos"], dataset[1]["pixel_values_videos"])
    assert (first["clip_spans"][:, 0] >= rows[1]["start"] - 1e-6).all()
    assert (first["clip_spans"][:, 1] <= rows[1]["end"] + 1e-6).all()
    dataset.set_epoch(1)
    assert not torch.equal(first["clip_spans"], dataset[1]["clip_spans"])


def test_unreadable_videos_are_skipped_and_reported(exported, processor, tmp_path):
    _, folder = exported
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    good = str(next(folder.glob("*.mp4")))
    rows = [{"video": good, "start": 0.5, "end": 3.0, "text": "a red square moves left"},
            {"video": str(tmp_path / "broken.mp4"), "start": 0.0, "end": 1.0, "text": "a dog"},
            {"video": str(tmp_path / "missing.mp4"), "start": None, "end": None, "text": "a cat"}]
    dataset = VideoTextPairDataset(rows, processor)
    batch = VideoTextCollator(processor)([dataset[i] for i in range(3)])
    # the unreadable rows are replaced by the next readable one: batches stay full
    assert batch["pixel_values_videos"].shape[0] == batch["input_ids"].shape[0] == 3
    assert len(batch["skipped"]) == 2  # each unreadable row counted once, when it is drawn
    assert "broken.mp4" in batch["skipped"][0] and "missing.mp4" in batch["skipped"][1]
    with pytest.raises(VideoDecodingError, match="could not be read"):
        VideoTextPairDataset(rows[1:], processor)[0]
