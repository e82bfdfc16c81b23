import io
import itertools
import json
import subprocess
import sys
import tarfile
from collections import Counter

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
from locvtp_hf.synthetic import SyntheticWorld
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


@pytest.mark.parametrize("metadata", ["metadata.jsonl", "metadata.csv"])
def test_videofolder_rows_without_a_caption_are_dropped_and_named(tmp_path, metadata):
    texts = ["a dog runs", "", "   ", None, "a cat sits"]
    if metadata.endswith(".jsonl"):
        # a null text, and a row without one
        rows = [{"file_name": f"{i}.mp4", "text": text} for i, text in enumerate(texts)] + [{"file_name": "5.mp4"}]
        texts.append(None)
        lines = [json.dumps(row) for row in rows]
    else:
        lines = ["file_name,text"] + [f"{i}.mp4,{text or ''}" for i, text in enumerate(texts)]
    (tmp_path / metadata).write_text("\n".join(lines) + "\n")
    rows, dropped = videofolder_rows(tmp_path, return_dropped=True)
    assert rows["text"] == ["a dog runs", "a cat sits"]
    assert [path.rsplit("/", 1)[1] for path in rows["video"]] == ["0.mp4", "4.mp4"]
    assert dropped == [f"{tmp_path / metadata} row {i}" for i, text in enumerate(texts) if not (text or "").strip()]
    assert len(videofolder_rows(tmp_path)) == 2


def test_howto100m_rows(tmp_path, caplog):
    captions = {"vid_a": {"start": [0.0, 4.5], "end": [4.0, 9.0], "text": ["crack two eggs", "  "]},
                "vid_b": {"start": [1.0, 3.0], "end": [3.0, 5.0], "text": ["whisk them", None]}}
    (tmp_path / "captions.json").write_text(json.dumps(captions))
    rows, dropped = howto100m_rows(tmp_path / "captions.json", "/videos", return_dropped=True)
    assert rows.to_list() == [  # the blank and the missing sentence are dropped, never turned into text
        {"video": "/videos/vid_a.mp4", "start": 0.0, "end": 4.0, "text": "crack two eggs"},
        {"video": "/videos/vid_b.mp4", "start": 1.0, "end": 3.0, "text": "whisk them"},
    ]
    assert dropped == [f"{tmp_path / 'captions.json'} video vid_a caption 1",
                       f"{tmp_path / 'captions.json'} video vid_b caption 1"]
    assert "2 row(s) of" in caplog.text and "have an empty or missing caption" in caplog.text


def test_webvid_rows(tmp_path):
    (tmp_path / "results.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n"
        "1001,http://example.invalid/a.mp4,PT00H00M12S,006001_006050,Aerial view of a beach \n"
        "1002,http://example.invalid/b.mp4,PT00H00M10S,006001_006050,\n"
        "1003,http://example.invalid/c.mp4,PT00H00M10S,006001_006050,\"  \"\n"
    )
    rows, dropped = webvid_rows(tmp_path / "results.csv", "/webvid", return_dropped=True)
    assert rows.to_list() == [{"video": "/webvid/006001_006050/1001.mp4", "text": "Aerial view of a beach"}]
    assert dropped == [f"{tmp_path / 'results.csv'} row 1", f"{tmp_path / 'results.csv'} row 2"]


def test_items_are_the_same_for_the_same_epoch_and_differ_across_epochs(exported, processor):
    world, _ = exported
    rows = world.pretraining_pairs("train")
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



def test_a_collator_for_trainer_logs_what_it_skipped_and_returns_model_inputs_only(
    exported, processor, tmp_path, caplog
):
    _, folder = exported
    good = str(next(folder.glob("*.mp4")))
    rows = [{"video": good, "start": 0.5, "end": 3.0, "text": "a red square moves left"},
            {"video": str(tmp_path / "missing.mp4"), "start": None, "end": None, "text": "a cat"}]
    dataset = VideoTextPairDataset(rows, processor)
    items = [dataset[i] for i in range(2)]
    reported = VideoTextCollator(processor)(items)
    with caplog.at_level("WARNING", logger="locvtp_hf.data"):
        batch = VideoTextCollator(processor, report_skipped=False)(items)
    assert "skipped" not in batch and set(batch) == set(reported) - {"skipped"}
    assert torch.equal(batch["pixel_values_videos"], reported["pixel_values_videos"])
    assert "missing.mp4" in caplog.text

def test_rows_without_a_caption_given_directly_are_skipped_and_reported(exported, processor):
    _, folder = exported
    good = str(next(folder.glob("*.mp4")))
    rows = [{"video": good, "start": 0.5, "end": 3.0, "text": " "},
            {"video": good, "start": 0.5, "end": 3.0, "text": "a red square moves left"}]
    item = VideoTextPairDataset(rows, processor)[0]
    assert item["text"] == "a red square moves left"
    assert item["skipped"] == [f"{good}: row 0 has no caption (text ' ')"]


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


def test_a_stream_left_open_at_exit_is_closed_quietly(shards, processor, tmp_path):
    """A script that stops in the middle of a shard (at `--max_steps`, say) exits without "Exception ignored" noise."""
    processor.save_pretrained(tmp_path / "processor")
    script = (
        "from locvtp_hf import LocVTPProcessor\n"
        "from locvtp_hf.data import StreamingVideoTextDataset\n"
        f"processor = LocVTPProcessor.from_pretrained({str(tmp_path / 'processor')!r})\n"
        f"samples = iter(StreamingVideoTextDataset({[str(path) for path in shards[1]]!r}, processor))\n"
        "print(next(samples)['text'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and "Exception ignored" not in result.stderr, result.stderr


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


def rewrite_tar(path, change) -> None:
    """Rewrite the tar file at `path` with `change(name, data) -> data` applied to each member."""
    with tarfile.open(path) as tar:
        members = [(member.name, tar.extractfile(member).read()) for member in tar]
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            data = change(name, data)
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def one_epoch(paths, processor) -> list[dict]:
    """The items of the first epoch of a stream over `paths`."""
    dataset = StreamingVideoTextDataset([str(path) for path in paths], processor, training=False)
    items = iter(dataset)
    return list(itertools.takewhile(lambda item: dataset.epoch == 0, items))


def test_streamed_samples_without_a_caption_are_skipped_and_named(exported, processor, tmp_path):
    _, folder = exported
    rows = videofolder_rows(folder).to_list()
    for index, text in ((1, ""), (2, "  "), (4, None)):
        rows[index]["text"] = text
    paths = write_webdataset_shards(rows, tmp_path, samples_per_shard=len(rows))
    rewrite_tar(paths[0], lambda name, data: b'{"start": 0.0}' if name == "000000005.json" else data)
    items = one_epoch(paths, processor)
    kept = [row["text"] for index, row in enumerate(rows) if index not in (1, 2, 4, 5)]
    assert [item["text"] for item in items] == kept
    skipped = [error for item in items for error in item["skipped"]]
    assert skipped == [f"{paths[0]}/{index:09d}.mp4 has no caption (its text is missing, empty or blank)"
                       for index in (1, 2, 4, 5)]


@pytest.fixture(scope="module")
def damaged_shards(exported, tmp_path_factory):
    """Three shards of the exported pairs, the first sample of the second with a malformed .json, and a truncated, an
    empty and a non-tar shard. Returns the texts of the readable pairs, the shard paths and what is wrong."""
    _, folder = exported
    rows = videofolder_rows(folder).to_list()
    folder = tmp_path_factory.mktemp("damaged")
    per_shard = len(rows) // 3 + 1
    good = write_webdataset_shards(rows, folder, samples_per_shard=per_shard)
    malformed = f"{good[1]}/{per_shard:09d}.json"
    rewrite_tar(good[1], lambda name, data: b'{"text": "a dog' if name == f"{per_shard:09d}.json" else data)
    # a copy of the last shard cut in the middle of its second video: its first pair stays readable
    with tarfile.open(good[2]) as tar:
        cut_member = [member for member in tar if member.name.endswith(".mp4")][1]
    truncated = folder / "truncated.tar"
    truncated.write_bytes(good[2].read_bytes()[: cut_member.offset_data + cut_member.size // 2])
    (folder / "empty.tar").write_bytes(b"")
    (folder / "not-a-tar.tar").write_bytes(b"this is not a tar file\n" * 100)
    readable = [row["text"] for index, row in enumerate(rows) if index != per_shard] + [rows[2 * per_shard]["text"]]
    paths = [*good, truncated, folder / "empty.tar", folder / "not-a-tar.tar"]
    return readable, paths, malformed, cut_member.name


def test_damaged_shards_are_skipped_and_named_and_the_good_pairs_all_read(damaged_shards, processor):
    readable, paths, malformed, cut_member = damaged_shards
    dataset = StreamingVideoTextDataset([str(path) for path in paths], processor, training=False)
    # two epochs: what goes wrong at the end of an epoch is reported with the next item
    items = list(itertools.islice(dataset, 2 * len(readable)))
    assert Counter(item["text"] for item in items[: len(readable)]) == Counter(readable)
    assert dataset.epoch == 1
    skipped = {error for item in items for error in item["skipped"]}
    assert len(skipped) == 1 and skipped.pop().startswith(f"{malformed}: malformed JSON")
    reports = sorted({error for item in items for error in item["skipped_shards"]})
    folder = paths[0].parent
    assert len(reports) == 3, reports
    assert reports[0].startswith(f"{folder / 'empty.tar'}: not a readable tar file (empty file)")
    assert reports[1].startswith(f"{folder / 'not-a-tar.tar'}: not a readable tar file")
    assert reports[2].startswith(f"{folder / 'truncated.tar'}: unreadable in member {cut_member}")


def test_a_stream_with_damaged_shards_resumes_where_it_stopped(damaged_shards, processor):
    readable, paths, _, _ = damaged_shards
    num_batches = 2 * len(readable) // 3 + 1  # into the second epoch
    uninterrupted, _ = stream(stream_loader(paths, processor), num_batches)
    first, state = stream(stream_loader(paths, processor), 4)
    rest, _ = stream(stream_loader(paths, processor), num_batches - 4, state)
    for expected, got in zip(uninterrupted, first + rest, strict=True):
        assert torch.equal(got["input_ids"], expected["input_ids"])
        assert got["skipped"] == expected["skipped"] and got["skipped_shards"] == expected["skipped_shards"]
    assert any(batch["skipped_shards"] for batch in uninterrupted)
