"""Grounding annotation loaders: exact counts on the real benchmark files, clipping and dropping on small files."""

import json
import logging

import pytest

from locvtp_hf.grounding_datasets import (
    GROUNDING_DATASETS,
    GROUNDING_FEATURES,
    LOADED_GROUNDING_FEATURES,
    DroppedRecord,
    load_grounding_dataset,
    read_qvhighlights_submission,
    write_qvhighlights_submission,
)
from locvtp_hf.grounding_metrics import grounding_metrics, highlight_metrics


# Counted by hand from the raw files (see docs/grounding_data_and_metrics.md): queries, videos, moments kept,
# moments clipped; no real file has a moment with start >= end, so nothing is dropped.
REAL_FILES = {
    "charades_sta": ("charades_sta/charades_sta_test.txt", 3720, 1334, 3720, 562),
    "activitynet_captions": ("activitynet_captions/val_1.json", 17505, 4917, 17505, 134),
    "tacos": ("tacos/test.json", 4001, 25, 4001, 5),
    "qvhighlights": ("qvhighlights/highlight_val_release.jsonl", 1550, 1519, 2803, 0),
    "didemo": ("didemo/val_data.json", 4180, 1094, 16765, 0),
}


# the optional highlight columns of a dataset without them (all but QVHighlights)
NO_SALIENCY = {"relevant_clip_ids": None, "saliency_scores": None}


@pytest.fixture(scope="module")
def load_real(real_data):
    """`load_real(name)`: the real file of `name` loaded once per module, with its report."""
    loaded = {}

    def load(name):
        if name not in loaded:
            path = real_data / "annotations" / REAL_FILES[name][0]
            loaded[name] = load_grounding_dataset(name, path, return_report=True)
        return loaded[name]

    return load


@pytest.mark.parametrize("name", GROUNDING_DATASETS)
def test_real_annotation_files_exact_counts(load_real, name):
    _, num_queries, num_videos, num_moments, num_clipped = REAL_FILES[name]
    dataset, report = load_real(name)
    assert dataset.features == LOADED_GROUNDING_FEATURES
    assert list(dataset.features)[: len(GROUNDING_FEATURES)] == list(GROUNDING_FEATURES)
    assert (report.num_queries_read, report.num_queries, len(dataset)) == (num_queries, num_queries, num_queries)
    assert (report.num_moments_read, report.num_moments) == (num_moments, num_moments)
    assert report.num_videos == len(set(dataset["video_id"])) == num_videos
    assert report.num_moments_clipped == num_clipped
    assert (report.num_moments_dropped, report.num_queries_dropped, report.dropped_query_ids) == (0, 0, [])
    assert report.dropped == []  # no real file has an empty sentence or video id, or a repeated query id or line
    assert len(set(dataset["query_id"])) == num_queries
    assert dataset.info.description == report.summary()
    for row in dataset.select(range(0, len(dataset), 97)):
        assert row["query"] == row["query"].strip() and row["query"]
        assert all(0 <= start < end <= row["duration"] for start, end in row["moments"])


def test_real_rows(load_real):
    charades = load_real("charades_sta")[0]
    assert charades[0] == {
        "query_id": "3MSZA#0", "video_id": "3MSZA", "duration": 30.96, "query": "person turn a light on.",
        "moments": [[24.3, 30.4]], **NO_SALIENCY,
    }
    # line 20: "AKO6M 12.7 19.9##the person takes a bag from the bottom cabinet." in a video of 18.58 s
    clipped = charades.filter(lambda row: row["query"] == "the person takes a bag from the bottom cabinet.")
    assert clipped["moments"] == [[[12.7, 18.58]]] and clipped["video_id"] == ["AKO6M"]

    activitynet = load_real("activitynet_captions")[0]
    assert activitynet[1]["query_id"] == "v_uqiMw7tQ1Cc#1"
    assert activitynet[1]["query"].startswith("The coach helps")  # the file has two leading spaces

    tacos = load_real("tacos")[0]
    assert tacos[0]["video_id"] == "s30-d52.avi"
    assert tacos[0]["moments"] == [[141 / 29.4, 354 / 29.4]] and tacos[0]["duration"] == 7346 / 29.4

    qvhighlights = load_real("qvhighlights")[0]
    assert qvhighlights[0]["query_id"] == "2579" and qvhighlights[0]["moments"] == [[82.0, 150.0]]
    assert sum(len(moments) > 1 for moments in qvhighlights["moments"]) == 530
    assert max(len(moments) for moments in qvhighlights["moments"]) == 25

    didemo = load_real("didemo")[0]
    # times [[1, 1], [1, 1], [1, 1], [0, 0]] in a video of 6 segments
    assert didemo[0]["query_id"] == "49152" and didemo[0]["duration"] == 30.0
    assert didemo[0]["moments"] == [[5.0, 10.0], [5.0, 10.0], [5.0, 10.0], [0.0, 5.0]]
    for name in ("charades_sta", "activitynet_captions", "tacos", "didemo"):
        dataset = load_real(name)[0]
        assert set(dataset["relevant_clip_ids"]) == set(dataset["saliency_scores"]) == {None}


def test_charades_sta_clips_drops_and_counts(tmp_path, caplog):
    (tmp_path / "Charades_v1_test.csv").write_text("id,subject,length\nAAAAA,x,20.0\nBBBBB,y,10.5\n")
    annotation_file = tmp_path / "charades_sta_test.txt"
    annotation_file.write_text(
        "AAAAA 1.0 5.5##a person opens a door.\n"
        "AAAAA 15.0 24.0##a person sits down.\n"  # clipped to the video's 20 s
        "BBBBB 4.0 4.0##a person laughs.\n"  # start == end: dropped
        "\n"
        "BBBBB 12.0 14.0##a person leaves.\n"  # after the end of the video: dropped
        "BBBBB 0.0 3.2##  a person  eats.  \n"
    )
    with caplog.at_level(logging.INFO, logger="locvtp_hf.grounding_datasets"):
        dataset, report = load_grounding_dataset("charades_sta", annotation_file, return_report=True)
    assert dataset.to_list() == [
        {"query_id": "AAAAA#0", "video_id": "AAAAA", "duration": 20.0, "query": "a person opens a door.",
         "moments": [[1.0, 5.5]], **NO_SALIENCY},
        {"query_id": "AAAAA#1", "video_id": "AAAAA", "duration": 20.0, "query": "a person sits down.",
         "moments": [[15.0, 20.0]], **NO_SALIENCY},
        {"query_id": "BBBBB#2", "video_id": "BBBBB", "duration": 10.5, "query": "a person  eats.",
         "moments": [[0.0, 3.2]], **NO_SALIENCY},
    ]
    assert (report.num_queries_read, report.num_moments_read, report.num_queries, report.num_videos) == (5, 5, 3, 2)
    assert (report.num_moments_clipped, report.num_moments_dropped, report.num_queries_dropped) == (1, 2, 2)
    assert report.dropped_query_ids == ["BBBBB#0", "BBBBB#1"]
    assert report.dropped == [
        DroppedRecord("no_moment", "line 3", "BBBBB#0"), DroppedRecord("no_moment", "line 5", "BBBBB#1")
    ]
    assert report.summary() in caplog.text
    assert "2 queries dropped (2 no_moment)" in report.summary()
    # durations given as a mapping instead of the metadata file
    from_mapping = load_grounding_dataset("charades_sta", annotation_file, durations={"AAAAA": 30.0, "BBBBB": 13.0})
    assert from_mapping["moments"] == [[[1.0, 5.5]], [[15.0, 24.0]], [[12.0, 13.0]], [[0.0, 3.2]]]


def test_charades_sta_errors(tmp_path):
    annotation_file = tmp_path / "charades_sta_train.txt"
    annotation_file.write_text("AAAAA 1.0 5.5##a person opens a door.\n")
    with pytest.raises(FileNotFoundError, match="pass `durations`.*Charades_v1_train.csv"):
        load_grounding_dataset("charades_sta", annotation_file)
    with pytest.raises(ValueError, match="line 1: video 'AAAAA' has no duration"):
        load_grounding_dataset("charades_sta", annotation_file, durations={"ZZZZZ": 3.0})
    annotation_file.write_text("AAAAA 1.0 5.5##fine.\nAAAAA 1.0##the end is missing.\n")
    with pytest.raises(ValueError, match="charades_sta_train.txt, line 2: expected 'VIDEO_ID START END##SENTENCE'"):
        load_grounding_dataset("charades_sta", annotation_file, durations={"AAAAA": 30.0})
    annotation_file.write_text("AAAAA 1.0 x##not a number.\n")
    with pytest.raises(ValueError, match="line 1: moment: expected a number, got 'x'"):
        load_grounding_dataset("charades_sta", annotation_file, durations={"AAAAA": 30.0})
    with pytest.raises(ValueError, match="video 'AAAAA' has a duration of 0.0 s"):
        load_grounding_dataset("charades_sta", annotation_file, durations={"AAAAA": 0.0})


def test_activitynet_captions_and_tacos(tmp_path):
    activitynet_file = tmp_path / "val_1.json"
    activitynet_file.write_text(json.dumps({
        "v_a": {"duration": 50.0, "timestamps": [[-1.0, 10.0], [20.0, 10.0], [5.0, 50.01]],
                "sentences": ["  A man talks.", "Backwards.", " He leaves."]},
    }))
    dataset, report = load_grounding_dataset("activitynet_captions", activitynet_file, return_report=True)
    assert dataset["query_id"] == ["v_a#0", "v_a#2"] and dataset["query"] == ["A man talks.", "He leaves."]
    assert dataset["moments"] == [[[0.0, 10.0]], [[5.0, 50.0]]]
    assert (report.num_moments_clipped, report.num_moments_dropped, report.dropped_query_ids) == (2, 1, ["v_a#1"])

    tacos_file = tmp_path / "test.json"
    tacos_file.write_text(json.dumps({
        "s1.avi": {"num_frames": 1000, "fps": 25.0, "timestamps": [[50, 100], [900, 1100]],
                   "sentences": ["He takes a knife", "He cuts"]},
    }))
    dataset, report = load_grounding_dataset("tacos", tacos_file, return_report=True)
    assert dataset["duration"] == [40.0, 40.0]
    assert dataset["moments"] == [[[2.0, 4.0]], [[36.0, 40.0]]]
    assert report.num_moments_clipped == 1
    tacos_file.write_text(json.dumps({"s1.avi": {"num_frames": 1000, "timestamps": [], "sentences": []}}))
    with pytest.raises(ValueError, match=r"test.json, video 's1.avi': missing the 'fps' field"):
        load_grounding_dataset("tacos", tacos_file)
    activitynet_file.write_text(json.dumps({"v_a": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": []}}))
    with pytest.raises(ValueError, match="'timestamps' and 'sentences' must be lists of the same length"):
        load_grounding_dataset("activitynet_captions", activitynet_file)


def test_qvhighlights_windows(tmp_path):
    annotation_file = tmp_path / "highlight_val_release.jsonl"
    queries = [
        {"qid": 7, "query": "A dog runs.", "duration": 150, "vid": "v1_0.0_150.0",
         "relevant_windows": [[0, 10], [140, 152], [150, 160]]},  # kept, clipped, dropped (starts at the end)
        {"qid": 8, "query": "Nothing here.", "duration": 120, "vid": "v2_0.0_120.0", "relevant_windows": [[130, 140]]},
    ]
    annotation_file.write_text("\n".join(json.dumps(query) for query in queries) + "\n")
    dataset, report = load_grounding_dataset("qvhighlights", annotation_file, return_report=True)
    assert dataset.to_list() == [
        {"query_id": "7", "video_id": "v1_0.0_150.0", "duration": 150.0, "query": "A dog runs.",
         "moments": [[0.0, 10.0], [140.0, 150.0]], **NO_SALIENCY},
    ]
    assert (report.num_moments_read, report.num_moments, report.num_moments_clipped) == (4, 2, 1)
    assert (report.num_moments_dropped, report.dropped_query_ids) == (2, ["8"])
    annotation_file.write_text(json.dumps({"qid": 9, "query": "Hidden.", "duration": 150, "vid": "v3"}) + "\n")
    with pytest.raises(ValueError, match="line 1: no 'relevant_windows'. QVHighlights' test split hides"):
        load_grounding_dataset("qvhighlights", annotation_file)


def test_charades_sta_drops_empty_sentences_and_repeated_lines(tmp_path, caplog):
    annotation_file = tmp_path / "charades_sta_test.txt"
    annotation_file.write_text(
        "AAAAA 1.0 5.5##a person opens a door.\n"
        "AAAAA 2.0 3.0##   \n"
        "AAAAA 1.0 5.5##a person opens a door.  \n"  # the first line again, but for trailing whitespace
        "AAAAA 1.0 5.5##a person opens a door again.\n"
    )
    with caplog.at_level(logging.INFO, logger="locvtp_hf.grounding_datasets"):
        dataset, report = load_grounding_dataset(
            "charades_sta", annotation_file, durations={"AAAAA": 30.0}, return_report=True
        )
    assert dataset["query_id"] == ["AAAAA#0", "AAAAA#3"]
    assert report.dropped == [
        DroppedRecord("empty_sentence", "line 2", "AAAAA#1"),
        DroppedRecord("duplicate_line", "line 3", "AAAAA#2", "the first, kept, is at line 1"),
    ]
    assert (report.num_queries_read, report.num_queries, report.num_queries_dropped) == (4, 2, 2)
    assert report.dropped_query_ids == ["AAAAA#1", "AAAAA#2"]
    assert "2 queries dropped (1 empty_sentence, 1 duplicate_line)" in dataset.info.description
    assert "line 3 ('AAAAA#2'): an exact repeat of an earlier line; the first, kept, is at line 1" in caplog.text


def test_qvhighlights_drops_repeated_qids_and_empty_fields(tmp_path):
    annotation_file = tmp_path / "highlight_val_release.jsonl"
    query = {"qid": 7, "query": "A dog runs.", "duration": 150, "vid": "v1", "relevant_windows": [[0, 10]]}
    queries = [
        query,
        {**query, "query": "Another query with the same qid.", "relevant_windows": [[20, 30]]},
        {**query, "qid": 8, "query": " "},
        {**query, "qid": 9, "vid": ""},
        {**query, "qid": 10},
    ]
    annotation_file.write_text("\n".join(json.dumps(query) for query in queries) + "\n")
    dataset, report = load_grounding_dataset("qvhighlights", annotation_file, return_report=True)
    assert dataset["query_id"] == ["7", "10"] and dataset["moments"] == [[[0.0, 10.0]], [[0.0, 10.0]]]
    assert report.dropped == [
        DroppedRecord("duplicate_query_id", "line 2", "7", "the first, kept, is at line 1"),
        DroppedRecord("empty_sentence", "line 3", "8"),
        DroppedRecord("empty_video_id", "line 4", "9"),
    ]
    assert (report.num_queries_read, report.num_moments_read, report.num_moments) == (5, 5, 2)


def test_a_json_line_that_is_not_an_object_is_an_error(tmp_path):
    annotation_file = tmp_path / "highlight_val_release.jsonl"
    query = {"qid": 7, "query": "A dog runs.", "duration": 150, "vid": "v1", "relevant_windows": [[0, 10]]}
    annotation_file.write_text(json.dumps(query) + "\n\n" + json.dumps([query]) + "\n")
    with pytest.raises(ValueError, match=r"highlight_val_release.jsonl, line 3: expected a JSON object \(one a line\), "
                       "got a list"):
        load_grounding_dataset("qvhighlights", annotation_file)


def test_didemo_drops_repeated_annotation_ids_and_empty_descriptions(tmp_path):
    annotation_file = tmp_path / "val_data.json"
    entry = {"annotation_id": 1, "video": "a.mov", "description": "a kid jumps", "num_segments": 6, "times": [[0, 0]]}
    repeated_id = {**entry, "description": "a kid lands", "times": [[1, 1]]}
    annotation_file.write_text(json.dumps([entry, repeated_id, {**entry, "annotation_id": 2, "description": ""}]))
    dataset, report = load_grounding_dataset("didemo", annotation_file, return_report=True)
    assert dataset["query"] == ["a kid jumps"]
    assert report.dropped == [
        DroppedRecord("duplicate_query_id", "entry 1", "1", "the first, kept, is at entry 0"),
        DroppedRecord("empty_sentence", "entry 2", "2"),
    ]


@pytest.mark.parametrize(
    "name, file_name, content",
    [
        ("charades_sta", "charades_sta_test.txt", "AAAAA 1.0 5.5##a person opens a door.\nAAAAA 1.0 5.5##caf\xe9.\n"),
        ("qvhighlights", "highlight_val_release.jsonl", '{"qid": 7}\n{"qid": 8, "query": "caf\xe9"}\n'),
        ("activitynet_captions", "val_1.json", '{"v_a": {\n"sentences": ["caf\xe9"]}}'),
    ],
)
def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path, name, file_name, content):
    annotation_file = tmp_path / file_name
    annotation_file.write_bytes(content.encode("latin-1"))
    offset = content.index("\xe9")
    durations = {"AAAAA": 30.0} if name == "charades_sta" else None
    with pytest.raises(ValueError, match=rf"{file_name} is not UTF-8: byte 0xe9 at offset {offset} \(line 2\).*"
                       "must be UTF-8"):
        load_grounding_dataset(name, annotation_file, durations=durations)


def test_durations_csv_must_be_utf8_and_a_byte_order_mark_is_accepted(tmp_path):
    (tmp_path / "Charades_v1_test.csv").write_bytes("id,length\nAAAAA,20.0\nCAF\xc9,3.0\n".encode("latin-1"))
    annotation_file = tmp_path / "charades_sta_test.txt"
    annotation_file.write_text("AAAAA 1.0 5.5##a person opens a door.\n", encoding="utf-8-sig")
    with pytest.raises(ValueError, match=r"Charades_v1_test.csv is not UTF-8: byte 0xc9 at offset 24 \(line 3\)"):
        load_grounding_dataset("charades_sta", annotation_file)
    (tmp_path / "Charades_v1_test.csv").write_text("id,length\nAAAAA,20.0\n", encoding="utf-8-sig")
    assert load_grounding_dataset("charades_sta", annotation_file)["video_id"] == ["AAAAA"]


def test_didemo_segments_and_durations(tmp_path):
    annotation_file = tmp_path / "val_data.json"
    annotation_file.write_text(json.dumps([
        {"annotation_id": 1, "video": "a.mov", "description": "a kid jumps ", "num_segments": 5,
         "times": [[0, 0], [1, 2], [4, 4], [5, 5]]},  # the last is past the 5 segments: dropped
        {"annotation_id": 2, "video": "b.mp4", "description": "a car passes", "num_segments": 6, "times": [[2, 1]]},
    ]))
    dataset, report = load_grounding_dataset("didemo", annotation_file, return_report=True)
    assert dataset.to_list() == [
        {"query_id": "1", "video_id": "a.mov", "duration": 25.0, "query": "a kid jumps",
         "moments": [[0.0, 5.0], [5.0, 15.0], [20.0, 25.0]], **NO_SALIENCY},
    ]
    assert (report.num_moments_dropped, report.num_moments_clipped, report.dropped_query_ids) == (2, 0, ["2"])
    # with the real durations the last segment is clipped to the video
    durations = tmp_path / "durations.csv"
    durations.write_text("id,length\na.mov,22.5\nb.mp4,29.0\n")
    dataset, report = load_grounding_dataset("didemo", annotation_file, durations=durations, return_report=True)
    assert dataset["duration"] == [22.5] and dataset["moments"] == [[[0.0, 5.0], [5.0, 15.0], [20.0, 22.5]]]
    assert report.num_moments_clipped == 1


def test_arguments_are_checked(tmp_path):
    annotation_file = tmp_path / "val_1.json"
    annotation_file.write_text("{}")
    with pytest.raises(ValueError, match="Unknown grounding dataset 'charades'; choose one of"):
        load_grounding_dataset("charades", annotation_file)
    with pytest.raises(FileNotFoundError, match="No tacos annotation file at"):
        load_grounding_dataset("tacos", tmp_path / "missing.json")
    with pytest.raises(ValueError, match="`durations` is only used for charades_sta and didemo"):
        load_grounding_dataset("activitynet_captions", annotation_file, durations={"v": 1.0})
    annotation_file.write_text("[]")
    with pytest.raises(ValueError, match="expected a JSON dict at the top level, got list"):
        load_grounding_dataset("activitynet_captions", annotation_file)
    empty = load_grounding_dataset("didemo", annotation_file)
    assert len(empty) == 0 and empty.features == LOADED_GROUNDING_FEATURES


def test_qvhighlights_keeps_the_highlight_annotations(real_data, load_real, tmp_path):
    path = real_data / "annotations" / REAL_FILES["qvhighlights"][0]
    first_line = json.loads(path.read_text().splitlines()[0])
    qvhighlights = load_real("qvhighlights")[0]
    assert qvhighlights[0]["relevant_clip_ids"] == first_line["relevant_clip_ids"]
    assert qvhighlights[0]["saliency_scores"] == first_line["saliency_scores"]
    assert all(len(ids) == len(scores) > 0 for ids, scores in zip(
        qvhighlights["relevant_clip_ids"], qvhighlights["saliency_scores"]))

    annotation_file = tmp_path / "highlight_val_release.jsonl"
    query = {"qid": 7, "query": "A dog runs.", "duration": 150, "vid": "v1", "relevant_windows": [[0, 4]],
             "relevant_clip_ids": [0, 1], "saliency_scores": [[4, 2, 0], [1, 3, 3]]}
    without = {key: value for key, value in query.items() if key not in ("relevant_clip_ids", "saliency_scores")}
    annotation_file.write_text(json.dumps(query) + "\n" + json.dumps({**without, "qid": 8}) + "\n")
    dataset = load_grounding_dataset("qvhighlights", annotation_file)
    assert dataset["relevant_clip_ids"] == [[0, 1], None]
    assert dataset["saliency_scores"] == [[[4.0, 2.0, 0.0], [1.0, 3.0, 3.0]], None]
    annotation_file.write_text(json.dumps(without) + "\n" + json.dumps({**query, "saliency_scores": [[4, 2, 0]]}))
    with pytest.raises(ValueError, match="line 2: 'saliency_scores' must have one row per relevant clip; got 1 rows"):
        load_grounding_dataset("qvhighlights", annotation_file)
    annotation_file.write_text(json.dumps({**query, "relevant_clip_ids": [0, -1]}))
    with pytest.raises(ValueError, match="line 1: 'relevant_clip_ids' must be a list of clip indices >= 0"):
        load_grounding_dataset("qvhighlights", annotation_file)


def test_qvhighlights_submission_round_trip(real_data, load_real, tmp_path):
    queries = load_real("qvhighlights")[0].select(range(20))
    # the ground truth as predictions, each window scored, listed worst first, and a shifted decoy last
    predictions = [
        [[start, end, 0.5 + 0.01 * rank] for rank, (start, end) in enumerate(row["moments"])] + [[0.0, 1.0, 0.1]]
        for row in queries
    ]
    saliency = [[float(clip % 3) for clip in range(int(row["duration"] / 2))] for row in queries]
    path = write_qvhighlights_submission(tmp_path / "hl_val_submission.jsonl", queries, predictions, saliency)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert list(lines[0]) == ["qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"]
    assert lines[0]["qid"] == 2579 and lines[0]["vid"] == queries[0]["video_id"]  # integer qids, as in the files
    submission = read_qvhighlights_submission(path)
    assert [row["qid"] for row in submission] == queries["query_id"]
    assert [row["query"] for row in submission] == queries["query"]
    assert [row["pred_saliency_scores"] for row in submission] == saliency
    for row, prediction in zip(submission, predictions):
        assert row["pred_relevant_windows"] == sorted(prediction, key=lambda window: -window[2])  # best first
    windows = [row["pred_relevant_windows"] for row in submission]
    assert grounding_metrics(windows, queries["moments"])["R@1,IoU=0.7"] == 1.0
    assert highlight_metrics([row["pred_saliency_scores"] for row in submission], queries) == highlight_metrics(
        saliency, queries
    )
    # only saliency, and queries given as lines of a QVHighlights file (the test split's have no windows)
    raw = [{"qid": "a1", "query": "A cat.", "vid": "v9", "duration": 4}]
    write_qvhighlights_submission(path, raw, saliency_predictions=[[0.5, 0.25]])
    assert read_qvhighlights_submission(path) == [
        {"qid": "a1", "query": "A cat.", "vid": "v9", "pred_relevant_windows": None,
         "pred_saliency_scores": [0.5, 0.25]}
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"qid": 1, "pred_relevant_windows": [[0, 2, 0.5]]}', '{"qid": 1, "pred_relevant_windows": []}'],
         "line 2: qid 1 repeats line 1"),
        (['{"qid": 1, "pred_relevant_windows": [[0, 2]]}'], r"line 1: pred_relevant_windows\[0\]: expected \[start"),
        (['{"qid": 1, "pred_relevant_windows": [[3, 2, 0.5]]}'], "line 1: pred_relevant_windows.*ends before"),
        (['{"qid": 1, "pred_relevant_windows": []}', '{"qid": 2, "pred_saliency_scores": [1]}'],
         r"line 2: has \['pred_saliency_scores'\] but the first line has \['pred_relevant_windows'\]"),
        (['{"qid": 1, "pred_saliency_scores": [1, "x"]}'], "line 1: pred_saliency_scores: expected a number"),
        (['{"qid": 1}'], "line 1: no 'pred_relevant_windows' or 'pred_saliency_scores'"),
        (['{"vid": "v", "pred_saliency_scores": [1]}'], "line 1: missing the 'qid' field"),
        ([], "has no predictions"),
    ],
)
def test_qvhighlights_submission_errors_name_the_line(tmp_path, lines, message):
    path = tmp_path / "hl_val_submission.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"hl_val_submission.jsonl(, {message}| {message})"):
        read_qvhighlights_submission(path)


def test_qvhighlights_submission_writing_errors(tmp_path):
    path, queries = tmp_path / "submission.jsonl", [{"query_id": "1", "query": "A dog.", "video_id": "v"}]
    with pytest.raises(ValueError, match=r"predictions\[0\] has moments without scores"):
        write_qvhighlights_submission(path, queries, [[[0.0, 2.0]]])
    with pytest.raises(ValueError, match=r"predictions\[0\] has no moment; the leaderboard's evaluation needs"):
        write_qvhighlights_submission(path, queries, [[]])
    with pytest.raises(ValueError, match="Got 1 queries and 2 predictions"):
        write_qvhighlights_submission(path, queries, [[[0.0, 2.0, 1.0]], []])
    with pytest.raises(ValueError, match="Nothing to write"):
        write_qvhighlights_submission(path, queries)
    with pytest.raises(ValueError, match=r"queries\[0\] has none of \['video_id', 'vid'\]"):
        write_qvhighlights_submission(path, [{"qid": 1, "query": "A dog."}], saliency_predictions=[[1.0]])
    with pytest.raises(FileNotFoundError, match="No QVHighlights submission file at"):
        read_qvhighlights_submission(tmp_path / "missing.jsonl")
