import itertools
import json

import datasets
import pytest
import torch

from locvtp_hf.data import (
    StreamingVideoTextDataset,
    VideoTextCollator,
    VideoTextPairDataset,
    howto100m_rows,
    videofolder_rows,
    webvid_rows,
    write_webdataset_shards,
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


# ---- streamed shards ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(exported, tmp_path_factory):
    """The exported pairs as 4 webdataset shards, one sample of which is not a video."""
    _, folder = exported
    rows = videofolder_rows(folder).to_list()
    broken = tmp_path_factory.mktemp("broken") / "broken.mp4"
    broken.write_bytes(b"not a video" * 50)
    rows.insert(3, {"video": str(broken), "text": "a dog runs", "start": 0.0, "end": 1.0})
    return rows, write_webdataset_shards(rows, tmp_path_factory.mktemp("shards"), samples_per_shard=len(rows) // 4 + 1)


def stream(loader, num_batches: int, state: dict | None = None):
    if state is not None:
        loader.load_state_dict(state)
    batches = iter(loader)
    return [next(batches) for _ in range(num_batches)], loader.state_dict()


def stream_loader(shards, processor, **kwargs):
    from torchdata.stateful_dataloader import StatefulDataLoader

    dataset = StreamingVideoTextDataset([str(path) for path in shards], processor, seed=5, **kwargs)
    return StatefulDataLoader(dataset, batch_size=3, num_workers=2, collate_fn=VideoTextCollator(processor))


def test_a_resumed_stream_continues_where_it_stopped(shards, processor):
    rows, paths = shards
    # more batches than one epoch holds: the stream goes on into the next epoch, in another shard order
    num_batches = 2 * len(rows) // 3 + 1
    uninterrupted, _ = stream(stream_loader(paths, processor), num_batches)
    first, state = stream(stream_loader(paths, processor), 3)
    rest, _ = stream(stream_loader(paths, processor), num_batches - 3, state)
    for expected, got in zip(uninterrupted, first + rest, strict=True):
        assert torch.equal(got["input_ids"], expected["input_ids"])
        assert torch.equal(got["pixel_values_videos"], expected["pixel_values_videos"])
        assert got["skipped"] == expected["skipped"]
    # the unreadable sample (the fourth) is passed over and reported by its shard and key
    reports = [error for batch in uninterrupted for error in batch["skipped"]]
    assert reports and all(".tar/000000003.mp4" in error for error in reports)


def test_each_process_streams_its_own_shards(shards, processor):
    rows, paths = shards
    readable = sorted(row["text"] for row in rows if "broken" not in row["video"])
    seen = []
    for rank in range(2):
        dataset = StreamingVideoTextDataset([str(path) for path in paths], processor, rank=rank, world_size=2)
        items, texts = iter(dataset), []
        while (item := next(items)) and dataset.epoch == 0:  # one epoch of this process's shards
            texts.append(item["text"])
        seen.append(texts)
    assert seen[0] and seen[1]
    assert sorted(seen[0] + seen[1]) == readable  # together the processes read every pair once


def test_parquet_shards_with_video_bytes_decode_like_the_files(exported, processor, tmp_path):
    _, folder = exported
    rows = videofolder_rows(folder).to_list()[:2]
    table = {
        "video": [open(row["video"], "rb").read() for row in rows],
        "text": [row["text"] for row in rows],
        "start": [row["start"] for row in rows],
        "end": [row["end"] for row in rows],
    }
    datasets.Dataset.from_dict(table).to_parquet(tmp_path / "part-0.parquet")
    streamed = list(itertools.islice(StreamingVideoTextDataset(str(tmp_path / "*.parquet"), processor,
                                                               training=False), 2))
    for row, item in zip(rows, streamed, strict=True):
        from_file = VideoTextPairDataset([row], processor, training=False)[0]
        assert item["text"] == row["text"]
        assert torch.equal(item["pixel_values_videos"], from_file["pixel_values_videos"])


def test_shards_of_mixed_formats_or_no_shards_are_refused(tmp_path, processor):
    (tmp_path / "a.tar").write_bytes(b"")
    (tmp_path / "b.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match="all be .tar"):
        StreamingVideoTextDataset(str(tmp_path / "*"), processor)
    with pytest.raises(FileNotFoundError, match="Unable to find"):
        StreamingVideoTextDataset(str(tmp_path / "*.none.tar"), processor)
