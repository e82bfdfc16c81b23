"""Retrieval readers: exact counts and contents on the real annotation files, the other MSR-VTT releases, the generic
jsonl, the synthetic world, and the training rows."""

import csv
import json
import logging

import pytest

from locvtp_hf.grounding_datasets import DroppedRecord
from locvtp_hf.retrieval_datasets import (
    RETRIEVAL_FEATURES,
    OneCaptionPerVideo,
    activitynet_paragraphs,
    didemo_paragraphs,
    flatten_captions,
    jsonl_retrieval,
    load_retrieval_dataset,
    msrvtt_retrieval,
)
from locvtp_hf.synthetic import SyntheticWorld


MSRVTT_TEST = "annotations/msrvtt/MSRVTT_JSFUSION_test_semicolon.csv"


def test_msrvtt_1k_a_test_split(real_data, tmp_path):
    test, report = msrvtt_retrieval(real_data / MSRVTT_TEST, video_dir="videos", return_report=True)
    assert test.features == RETRIEVAL_FEATURES
    assert (report.num_videos, report.num_captions, report.dropped) == (1000, 1000, [])
    assert test.info.description == report.summary()
    assert len(test) == 1000 and sum(len(captions) for captions in test["captions"]) == 1000
    assert test[0] == {"video_id": "video9770", "video": "videos/video9770.mp4",
                       "captions": ["a person is connecting something to system"]}
    assert test[999]["captions"] == ["bearded guy in grey tshirt talking to the camera"]

    # the usual comma-separated release of the same file reads the same
    with open(real_data / MSRVTT_TEST, newline="") as file:
        rows = list(csv.reader(file, delimiter=";"))
    with open(tmp_path / "MSRVTT_JSFUSION_test.csv", "w", newline="") as file:
        csv.writer(file).writerows(rows)
    assert msrvtt_retrieval(tmp_path / "MSRVTT_JSFUSION_test.csv", video_dir="videos").to_list() == test.to_list()


def test_msrvtt_json_with_a_split_list_and_json_records(tmp_path):
    # MSRVTT_data.json layout: 3 videos with 2 captions each; the 9k-style list keeps two of them, in its order
    data = {
        "videos": [{"video_id": f"video{i}", "split": "train"} for i in range(3)],
        "sentences": [{"video_id": f"video{i}", "caption": f"caption {k} of {i} ", "sen_id": 2 * i + k}
                      for k in range(2) for i in range(3)],
    }
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    (tmp_path / "MSRVTT_train.9k.csv").write_text("video_id\nvideo2\nvideo0\n")
    train = msrvtt_retrieval(tmp_path / "MSRVTT_data.json", video_ids=tmp_path / "MSRVTT_train.9k.csv")
    assert train["video_id"] == ["video2", "video0"]
    assert train["video"] == ["video2", "video0"]  # no video_dir: the id, for a load_video function
    assert train[0]["captions"] == ["caption 0 of 2", "caption 1 of 2"]
    assert len(msrvtt_retrieval(tmp_path / "MSRVTT_data.json")) == 3
    with pytest.raises(ValueError, match="1 of the 2 requested videos have no caption"):
        msrvtt_retrieval(tmp_path / "MSRVTT_data.json", video_ids=["video1", "video7"])

    # the list-of-records releases: ids are the file stems
    records = [{"video": "video7.mp4", "caption": "a dog runs"}, {"video": "video7.mp4", "caption": ["it barks"]}]
    (tmp_path / "msrvtt_test.json").write_text(json.dumps(records))
    rows = msrvtt_retrieval(tmp_path / "msrvtt_test.json", video_dir="videos")
    assert rows.to_list() == [
        {"video_id": "video7", "video": "videos/video7.mp4", "captions": ["a dog runs", "it barks"]}
    ]


def test_didemo_paragraphs(real_data):
    paragraphs, report = didemo_paragraphs(real_data / "annotations/didemo/val_data.json", return_report=True)
    assert len(paragraphs) == 1094 and report.dropped == []
    assert all(len(captions) == 1 for captions in paragraphs["captions"])
    # its descriptions are, in the file: "camera stops panning right" (segments 4-4), "the bush ..." (2.5-3.25),
    # "the city ..." (3-3.75): joined by the annotators' mean start
    row = paragraphs[paragraphs["video_id"].index("86091119@N00_13912142554_c451140af5.mp4")]
    assert row["captions"] == [
        "the bush on the right waves in the wind. the city is no longer visible camera stops panning right"
    ]


def test_activitynet_paragraphs(real_data):
    paragraphs, report = activitynet_paragraphs(
        real_data / "annotations/activitynet_captions/val_1.json", video_dir="anet", return_report=True
    )
    assert len(paragraphs) == 4917 and report.dropped == []
    row = paragraphs[paragraphs["video_id"].index("v_D0pVkTEYQg8")]  # timestamps 4.39, 4.17, 14.34 in the file
    assert row["video"] == "anet/v_D0pVkTEYQg8.mp4"
    assert row["captions"] == [
        "The guy has his hand on the handles. A guy exercises on a stationary bike. The guy lets go of the handles "
        "and puts his hands to his side."
    ]


def test_msrvtt_drops_and_reports_empty_captions_and_video_ids(tmp_path, caplog):
    (tmp_path / "test.csv").write_text(
        "key;vid_key;video_id;sentence\n"
        "ret0;msr0;video0;a man sings\n"
        "ret1;msr1;;a caption without a video\n"
        "ret2;msr2;video2;   \n"
        "ret3;msr3;video3\n"
    )
    with caplog.at_level(logging.WARNING, logger="locvtp_hf.retrieval_datasets"):
        rows, report = msrvtt_retrieval(tmp_path / "test.csv", return_report=True)
    assert rows["video_id"] == ["video0"]
    assert report.dropped == [
        DroppedRecord("empty_video_id", "line 3", ""),
        DroppedRecord("empty_sentence", "line 4", "video2"),
        DroppedRecord("empty_sentence", "line 5", "video3"),
    ]
    assert rows.info.description == report.summary() == (
        f"msrvtt ({tmp_path / 'test.csv'}): kept 1 videos with 1 captions; 3 captions or videos dropped "
        "(1 empty_video_id, 2 empty_sentence)."
    )
    assert "line 4 ('video2'): the sentence is empty or blank" in caplog.text

    data = {
        "videos": [{"video_id": "video0"}, {"video_id": "video1"}],
        "sentences": [{"video_id": "video0", "caption": "a man sings"}, {"video_id": "", "caption": "no video"},
                      {"video_id": "video1", "caption": ""}],
    }
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    rows, report = msrvtt_retrieval(tmp_path / "MSRVTT_data.json", return_report=True)
    assert rows["video_id"] == ["video0"]
    assert report.dropped == [
        DroppedRecord("empty_video_id", "sentences[1]", ""),
        DroppedRecord("empty_sentence", "sentences[2]", "video1"),
        DroppedRecord("no_caption", "the 'videos' list", "video1"),
    ]


def test_readers_report_what_they_drop(tmp_path):
    entry = {"annotation_id": 1, "video": "a.mov", "description": "a kid jumps", "times": [[0, 0]]}
    (tmp_path / "val_data.json").write_text(json.dumps([
        entry, {**entry, "description": "a kid lands"}, {**entry, "annotation_id": 2, "description": " "},
        {**entry, "annotation_id": 3, "description": "the kid lands", "times": [[1, 1]]},
    ]))
    rows, report = didemo_paragraphs(tmp_path / "val_data.json", return_report=True)
    assert rows["captions"] == [["a kid jumps the kid lands"]]
    assert report.dropped == [
        DroppedRecord("duplicate_query_id", "entry 1", "a.mov", "the first, kept, is at entry 0"),
        DroppedRecord("empty_sentence", "entry 2", "a.mov"),
    ]

    (tmp_path / "val_1.json").write_text(json.dumps({
        "v_a": {"duration": 9.0, "timestamps": [[0, 1], [1, 2]], "sentences": ["He runs.", "  "]},
        "v_b": {"duration": 9.0, "timestamps": [[0, 1]], "sentences": [""]},
    }))
    rows, report = activitynet_paragraphs(tmp_path / "val_1.json", return_report=True)
    assert rows["video_id"] == ["v_a"] and rows["captions"] == [["He runs."]]
    assert report.dropped == [
        DroppedRecord("empty_sentence", "video 'v_a', sentence 1", "v_a"),
        DroppedRecord("empty_sentence", "video 'v_b', sentence 0", "v_b"),
    ]

    lines = [{"video": "a.mp4", "caption": ["a dog runs", " "]}, {"video": "b.mp4", "caption": []}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rows, report = jsonl_retrieval(tmp_path / "pairs.jsonl", return_report=True)
    assert rows["captions"] == [["a dog runs"]]
    assert report.dropped == [DroppedRecord("empty_sentence", "line 1", "a.mp4"),
                              DroppedRecord("empty_sentence", "line 2", "b.mp4")]


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    # one video id for two files: which one is meant is unknown, so it is an error rather than a silent merge
    lines = [{"video": "a.mp4", "caption": "a dog runs", "video_id": "dog"},
             {"video": "b.mp4", "caption": "a dog barks", "video_id": "dog"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with pytest.raises(ValueError, match="pairs.jsonl, line 2: video id 'dog' names the file 'b.mp4', but line 1 gave "
                       "it 'a.mp4'"):
        jsonl_retrieval(tmp_path / "pairs.jsonl")
    with pytest.raises(ValueError, match="line 2: video id 'dog' names the file 'b.mp4'"):
        msrvtt_retrieval(tmp_path / "pairs.jsonl")

    (tmp_path / "list.jsonl").write_text('{"video": "a.mp4", "caption": "ok"}\n\n["a.mp4", "a list"]\n')
    with pytest.raises(ValueError, match="list.jsonl, line 3: expected a JSON object"):
        jsonl_retrieval(tmp_path / "list.jsonl")

    (tmp_path / "latin1.jsonl").write_bytes('{"video": "a.mp4", "caption": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.jsonl is not UTF-8: byte 0xe9 at offset 34 \(line 1\)"):
        jsonl_retrieval(tmp_path / "latin1.jsonl")
    (tmp_path / "latin1.csv").write_bytes("key,vid_key,video_id,sentence\nr,m,video0,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv is not UTF-8: byte 0xe9 at offset 44 \(line 2\)"):
        msrvtt_retrieval(tmp_path / "latin1.csv")


def test_generic_jsonl(tmp_path):
    lines = [
        {"video": "clips/a.mp4", "caption": "a man opens the door"},
        {"video": "clips/b.mp4", "caption": ["a dog runs", "a dog is running"], "video_id": "dog"},
        {"video": "clips/a.mp4", "caption": "he walks in"},
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rows = jsonl_retrieval(tmp_path / "pairs.jsonl")
    assert rows.to_list() == [
        {"video_id": "clips/a.mp4", "video": str(tmp_path / "clips/a.mp4"),
         "captions": ["a man opens the door", "he walks in"]},
        {"video_id": "dog", "video": str(tmp_path / "clips/b.mp4"), "captions": ["a dog runs", "a dog is running"]},
    ]
    (tmp_path / "bad.jsonl").write_text('{"video": "a.mp4", "caption": "ok"}\n{"video": "b.mp4", "text": "no"}\n')
    with pytest.raises(ValueError, match="bad.jsonl, line 2 needs the keys 'video' and 'caption'"):
        jsonl_retrieval(tmp_path / "bad.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"video": "a.mp4", "caption": "ok"}\n{"video": \n')
    with pytest.raises(ValueError, match="broken.jsonl, line 2: not valid JSON"):
        jsonl_retrieval(tmp_path / "broken.jsonl")


def test_synthetic_captions_are_the_default():
    world = SyntheticWorld(seed=3, num_train=2, num_test=5)
    rows = load_retrieval_dataset("synthetic", world=world)
    assert rows.to_list() == world.retrieval_dataset("test").to_list() and rows.features == RETRIEVAL_FEATURES
    assert rows["video_id"] == [f"test-0000{i}" for i in range(5)] and rows["video"] == rows["video_id"]
    assert [captions[0] for captions in rows["captions"]] == world.captions("test")["caption"]
    with pytest.raises(ValueError, match="The synthetic reader needs the world"):
        load_retrieval_dataset("synthetic")
    with pytest.raises(ValueError, match="Unknown retrieval dataset 'youcook'"):
        load_retrieval_dataset("youcook")
    with pytest.raises(ValueError, match="needs an annotation file"):
        load_retrieval_dataset("didemo")


def test_the_readers_by_name_take_the_video_files_extension(tmp_path):
    data = {"sentences": [{"video_id": "video0", "caption": "a man opens the door"}]}
    (tmp_path / "data.json").write_text(json.dumps(data))
    assert load_retrieval_dataset("msrvtt", tmp_path / "data.json", "videos")["video"] == ["videos/video0.mp4"]
    webm = load_retrieval_dataset("msrvtt", tmp_path / "data.json", "videos", extension=".webm")
    assert webm["video"] == ["videos/video0.webm"]
    with pytest.raises(ValueError, match="The jsonl reader takes no extension: its rows name their video files"):
        load_retrieval_dataset("jsonl", tmp_path / "pairs.jsonl", extension=".mp4")


def test_captions_flatten_to_queries_and_training_draws_one_caption_per_video(tmp_path):
    data = {"sentences": [{"video_id": "v0", "caption": f"caption {k}"} for k in range(4)]
            + [{"video_id": "v1", "caption": "only caption"}]}
    (tmp_path / "data.json").write_text(json.dumps(data))
    rows = msrvtt_retrieval(tmp_path / "data.json")
    captions, text_to_video = flatten_captions(rows)
    assert captions == ["caption 0", "caption 1", "caption 2", "caption 3", "only caption"]
    assert text_to_video.tolist() == [0, 0, 0, 0, 1]

    training = OneCaptionPerVideo(rows, seed=0)
    drawn = set()
    for epoch in range(12):
        training.set_epoch(epoch)
        assert len(training) == 2 and training[1]["text"] == "only caption"
        assert training[0] == training[0]  # the same draw within an epoch
        drawn.add(training[0]["text"])
    assert drawn == {"caption 0", "caption 1", "caption 2", "caption 3"}
