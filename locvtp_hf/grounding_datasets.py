"""
Loaders of the temporal grounding benchmarks' annotation files into one `datasets` schema.

Every loader gives rows of [`GROUNDING_FEATURES`]: `query_id`, `video_id`, `duration` (seconds), `query` and
`moments` (a list of `[start, end]` in seconds; several for QVHighlights windows and DiDeMo annotators), and the
optional columns of [`GROUNDING_OPTIONAL_FEATURES`]: QVHighlights' highlight annotations, `None` for the other
datasets. Moments that
reach outside `[0, duration]` are clipped to it; moments with `start >= end` after clipping are dropped, and queries
left without a moment are dropped. Queries with an empty sentence or an empty video id, and repeats (of a query id, or
of a whole line), are dropped too. All of it is counted in a [`GroundingLoadReport`], logged, and written into the
dataset's `info.description`; each dropped query is listed there with its line or entry and the reason, one of
[`DROP_REASONS`]. Files must be UTF-8 (a leading byte order mark is accepted).
"""

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from transformers.utils import logging

from .grounding_metrics import as_ranked_moments


GROUNDING_FEATURES = datasets.Features(
    {
        "query_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "duration": datasets.Value("float64"),
        "query": datasets.Value("string"),
        "moments": datasets.List(datasets.List(datasets.Value("float64"), length=2)),
    }
)
# QVHighlights' highlight annotations: the indices of the 2-second clips relevant to the query and, per relevant clip,
# the saliency score (0-4) each annotator gave it. `None` for datasets without them. The loaders give these columns
# after those of `GROUNDING_FEATURES`, which stays the schema that grounding code requires.
GROUNDING_OPTIONAL_FEATURES = datasets.Features(
    {
        "relevant_clip_ids": datasets.List(datasets.Value("int64")),
        "saliency_scores": datasets.List(datasets.List(datasets.Value("float64"))),
    }
)
LOADED_GROUNDING_FEATURES = datasets.Features({**GROUNDING_FEATURES, **GROUNDING_OPTIONAL_FEATURES})
DIDEMO_SEGMENT_SECONDS = 5.0
# Why an annotation loader (here and in `retrieval_datasets`) leaves a query, caption or video out.
DROP_REASONS = {
    "empty_sentence": "the sentence is empty or blank",
    "empty_video_id": "the video id is empty",
    "duplicate_query_id": "an earlier line or entry has the same query id",
    "duplicate_line": "an exact repeat of an earlier line",
    "no_moment": "none of its moments is left once those with start >= end are dropped",
    "no_caption": "the video is listed but no caption names it",
}
_NUM_DROPPED_LOGGED = 5


@dataclass
class DroppedRecord:
    """
    A query, caption or video that a loader left out.

    Attributes:
        reason (`str`): Why, one of [`DROP_REASONS`].
        location (`str`): Where in the annotation file, e.g. `"line 12"`, `"entry 3"` or `"video 'v_x'"`.
        record_id (`str`): The query id, or the video id of a retrieval caption or video.
        detail (`str`): More, e.g. where the kept first query with the same id is.
    """

    reason: str
    location: str
    record_id: str
    detail: str = ""

    def __str__(self) -> str:
        detail = f"; {self.detail}" if self.detail else ""
        return f"{self.location} ({self.record_id!r}): {DROP_REASONS[self.reason]}{detail}"


@dataclass
class LoadReport:
    """
    What an annotation loader dropped, and why: the part of the load reports that grounding and retrieval share.

    Attributes:
        dataset (`str`): The format's name, e.g. `"charades_sta"`.
        annotation_file (`str`): The file read.
        dropped (`list[DroppedRecord]`): Each query, caption or video left out, in file order, with its reason.
    """

    dataset: str
    annotation_file: str
    dropped: list[DroppedRecord] = field(default_factory=list)

    def __post_init__(self):
        # not a field: the location of the first record of each (reason, key) seen by `drop_if_repeat`
        self._first_location_of: dict[tuple[str, str], str] = {}

    def drop(self, reason: str, location: str, record_id: str, detail: str = "") -> None:
        """Record that the query, caption or video `record_id` at `location` is left out for `reason`."""
        if reason not in DROP_REASONS:
            raise ValueError(f"Unknown drop reason {reason!r}; use one of {sorted(DROP_REASONS)}.")
        self.dropped.append(DroppedRecord(reason, location, record_id, detail))

    def drop_if_repeat(self, reason: str, key: str, location: str, record_id: str) -> bool:
        """
        Whether an earlier record had the same `key` (a query id, a line): if so the record at `location` is dropped
        for `reason`, naming where the first one, which is kept, is; if not, `key` is remembered.
        """
        first_location = self._first_location_of.setdefault((reason, key), location)
        if first_location == location:
            return False
        self.drop(reason, location, record_id, f"the first, kept, is at {first_location}")
        return True

    def dropped_counts(self) -> dict[str, int]:
        """The number of records dropped for each reason."""
        return dict(Counter(record.reason for record in self.dropped))

    def _dropped_summary(self, noun: str) -> str:
        """E.g. `"3 queries dropped (2 empty_sentence, 1 no_moment)"`."""
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.dropped_counts().items())
        return f"{len(self.dropped)} {noun} dropped" + (f" ({reasons})" if reasons else "")

    def summary(self) -> str:
        """One line for logs; each report says what it kept."""
        raise NotImplementedError

    def log(self, warn: bool = False) -> None:
        """
        Log `summary()`, as a warning when anything was dropped or `warn`, and the first dropped records, with the
        logger of the module that defines the report.
        """
        logger = logging.get_logger(type(self).__module__)
        (logger.warning if warn or self.dropped else logger.info)(self.summary())
        if self.dropped:
            shown = "\n".join(f"  {record}" for record in self.dropped[:_NUM_DROPPED_LOGGED])
            more = len(self.dropped) - _NUM_DROPPED_LOGGED
            more = f"\n  ... and {more} more (the load report's `dropped` lists all)" if more > 0 else ""
            logger.warning(f"{self.annotation_file}: dropped\n{shown}{more}")


@dataclass
class GroundingLoadReport(LoadReport):
    """
    What a grounding loader kept, clipped and dropped.

    Attributes:
        dataset (`str`): The format's name, e.g. `"charades_sta"`.
        annotation_file (`str`): The file read.
        dropped (`list[DroppedRecord]`): Each query dropped, in file order, with its reason.
        num_queries_read (`int`): Queries in the file, dropped ones included.
        num_moments_read (`int`): Moments in the file (one per query, or several), those of dropped queries included.
        num_queries (`int`): Queries kept.
        num_moments (`int`): Moments kept.
        num_videos (`int`): Distinct videos among the queries kept.
        num_moments_clipped (`int`): Kept moments that reached outside `[0, duration]` and were clipped to it.
        num_moments_dropped (`int`): Moments dropped because `start >= end` (as given, or once clipped to the video).
        num_queries_dropped (`int`): Queries dropped, for any reason (`len(dropped)`).
        dropped_query_ids (`list[str]`): The `query_id` of each dropped query.
    """

    num_queries_read: int = 0
    num_moments_read: int = 0
    num_queries: int = 0
    num_moments: int = 0
    num_videos: int = 0
    num_moments_clipped: int = 0
    num_moments_dropped: int = 0
    num_queries_dropped: int = 0
    dropped_query_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.dataset} ({self.annotation_file}): kept {self.num_queries}/{self.num_queries_read} queries on "
            f"{self.num_videos} videos and {self.num_moments}/{self.num_moments_read} moments; "
            f"{self.num_moments_clipped} moments clipped to [0, duration], {self.num_moments_dropped} moments dropped "
            f"(start >= end), {self._dropped_summary('queries')}."
        )


def load_grounding_dataset(
    name: str,
    annotation_file: str | os.PathLike,
    durations: str | os.PathLike | Mapping[str, float] | None = None,
    return_report: bool = False,
) -> datasets.Dataset | tuple[datasets.Dataset, GroundingLoadReport]:
    """
    Load a temporal grounding annotation file into the [`LOADED_GROUNDING_FEATURES`] schema: the columns of
    [`GROUNDING_FEATURES`], then those of [`GROUNDING_OPTIONAL_FEATURES`] (QVHighlights' `relevant_clip_ids` and
    `saliency_scores` as its files give them, `None` for the other datasets and for QVHighlights lines without them).

    | `name` | file | `query_id` | durations |
    |---|---|---|---|
    | `"charades_sta"` | `charades_sta_{split}.txt`: `VIDEO START END##SENTENCE` a line | `{video}#{i}` | `durations` |
    | `"activitynet_captions"` | `{train,val_1,val_2}.json` | `{video}#{i}` | in the file |
    | `"tacos"` | 2D-TAN's `{train,val,test}.json`, moments in frames | `{video}#{i}` | `num_frames / fps` |
    | `"qvhighlights"` | `highlight_{split}_release.jsonl` | `qid` | in the file |
    | `"didemo"` | `{train,val,test}_data.json`, 5-second segment indices | `annotation_id` | see below |

    `{video}#{i}` is the `i`-th sentence of the video in file order (counted before anything is dropped). Sentences are
    kept verbatim but for surrounding whitespace. Video ids are kept as the files give them (TACoS and DiDeMo ids
    carry a file extension).

    A query is dropped, and listed in the report's `dropped` with its line or entry and the reason (see
    [`DROP_REASONS`]), when its sentence is empty or blank (`"empty_sentence"`), its video id is empty
    (`"empty_video_id"`), its line repeats an earlier line exactly (`"duplicate_line"`), its query id is an earlier
    query's (`"duplicate_query_id"`, the first is kept), or none of its moments is left (`"no_moment"`).

    - Charades-STA durations come from the `length` column of Charades' `Charades_v1_{split}.csv`; by default the one
      next to the annotation file with the same split name (`charades_sta_test.txt` -> `Charades_v1_test.csv`).
    - TACoS moments are frame indices; seconds are `frame / fps` and the duration is `num_frames / fps` (2D-TAN).
    - DiDeMo marks each annotator's moment `[i, j]` as the 5-second segments where it starts and ends: seconds
      `[5 i, 5 (j + 1)]`. The files give no duration, only `num_segments` (5 or 6; videos are cut at 30 s and
      "some videos are a little shorter than 25 seconds, so were split into five"), so the duration is
      `5 * num_segments` unless `durations` gives the real length of each video (probe the downloaded files), in
      which case the last segment is clipped to it. One moment per annotator is kept, repeats included, so that
      protocols over annotators (DiDeMo's own) stay possible.

    Args:
        name (`str`): One of `"charades_sta"`, `"activitynet_captions"`, `"tacos"`, `"qvhighlights"`, `"didemo"`.
        annotation_file (`str` or `os.PathLike`): The file.
        durations (`str`, `os.PathLike` or `Mapping[str, float]`, *optional*): Video durations in seconds, for
            Charades-STA and DiDeMo only: a `{video_id: seconds}` mapping or a CSV file with `id` and `length`
            columns (the Charades metadata layout).
        return_report (`bool`, *optional*, defaults to `False`): Also return the [`GroundingLoadReport`].

    Returns:
        `datasets.Dataset`, or `(datasets.Dataset, GroundingLoadReport)` with `return_report=True`.

    Raises:
        `FileNotFoundError`: the annotation or durations file does not exist.
        `ValueError`: an unknown `name`, or a malformed file (the message names the file and the line or entry),
            among them a file that is not UTF-8 and a JSON line that is not an object.
    """
    if name not in _READERS:
        raise ValueError(f"Unknown grounding dataset {name!r}; choose one of {sorted(_READERS)}.")
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"No {name} annotation file at {annotation_file}.")
    if durations is not None and name not in ("charades_sta", "didemo"):
        raise ValueError(f"`durations` is only used for charades_sta and didemo; {name} files carry their durations.")
    if isinstance(durations, (str, os.PathLike)):
        durations = _read_durations_csv(Path(durations))
    if name == "charades_sta" and durations is None:
        durations = _read_durations_csv(_charades_metadata_file(annotation_file))

    report = GroundingLoadReport(dataset=name, annotation_file=str(annotation_file))
    rows = []
    for record in _READERS[name](annotation_file, durations):
        row = _keep_record(record, report)
        if row is not None:
            rows.append(row)
    report.num_queries = len(rows)
    report.num_moments = sum(len(row["moments"]) for row in rows)
    report.num_videos = len({row["video_id"] for row in rows})
    report.num_queries_dropped = len(report.dropped)
    report.dropped_query_ids = [record.record_id for record in report.dropped]
    summary = report.summary()
    report.log(warn=bool(report.num_moments_clipped or report.num_moments_dropped))

    info = datasets.DatasetInfo(description=summary, features=LOADED_GROUNDING_FEATURES)
    columns = {column: [row[column] for row in rows] for column in LOADED_GROUNDING_FEATURES}
    # straight to Arrow: the rows already hold the schema's plain types, so datasets' per-value encoding is not needed
    table = pa.Table.from_pydict(columns, schema=LOADED_GROUNDING_FEATURES.arrow_schema)
    dataset = datasets.Dataset(table, info=info)
    return (dataset, report) if return_report else dataset


def _keep_record(record: dict[str, Any], report: GroundingLoadReport) -> dict[str, Any] | None:
    """
    The row of a record, its moments clipped to `[0, duration]` and the empty ones dropped; `None` when the whole
    query is dropped. Counts both in `report`.
    """
    location, line = record.pop("location"), record.pop("line")
    report.num_queries_read += 1
    report.num_moments_read += len(record["moments"])
    query_id = record["query_id"]
    if not record["query"]:
        report.drop("empty_sentence", location, query_id)
        return None
    if not record["video_id"]:
        report.drop("empty_video_id", location, query_id)
        return None
    if report.drop_if_repeat("duplicate_query_id", query_id, location, query_id):
        return None
    # Charades-STA numbers its query ids, so only the whole line shows a repeat
    if line is not None and report.drop_if_repeat("duplicate_line", line, location, query_id):
        return None

    duration = record["duration"]
    kept = []
    for start, end in record["moments"]:
        clipped_start, clipped_end = max(start, 0.0), min(end, duration)
        if clipped_start >= clipped_end:
            report.num_moments_dropped += 1
            continue
        if (clipped_start, clipped_end) != (start, end):
            report.num_moments_clipped += 1
        kept.append([clipped_start, clipped_end])
    if not kept:
        report.drop("no_moment", location, query_id)
        return None
    return {**record, "moments": kept}


def _charades_sta(path: Path, durations: Mapping[str, float]) -> Iterator[dict[str, Any]]:
    sentences_per_video: dict[str, int] = {}
    for line_number, line in _lines(path):
        where = f"{path}, line {line_number}"
        head, separator, sentence = line.partition("##")
        fields = head.split()
        if not separator or len(fields) != 3:
            raise ValueError(f"{where}: expected 'VIDEO_ID START END##SENTENCE', got {line!r}.")
        video_id = fields[0]
        if video_id not in durations:
            raise ValueError(f"{where}: video {video_id!r} has no duration in the durations given.")
        index = sentences_per_video.get(video_id, 0)
        sentences_per_video[video_id] = index + 1
        yield _record(
            f"{video_id}#{index}", video_id, durations[video_id], sentence, [fields[1:]], path, f"line {line_number}",
            line=line,
        )


def _activitynet_captions(path: Path, durations: None) -> Iterator[dict[str, Any]]:
    annotations = _read_json(path, dict)
    for video_id, video in annotations.items():
        location = f"video {video_id!r}"
        where = f"{path}, {location}"
        timestamps, sentences = _get(video, "timestamps", where), _get(video, "sentences", where)
        _check_same_length(timestamps, sentences, where)
        for index, (moment, sentence) in enumerate(zip(timestamps, sentences)):
            yield _record(
                f"{video_id}#{index}", video_id, _get(video, "duration", where), sentence, [moment], path,
                f"{location}, sentence {index}",
            )


def _tacos(path: Path, durations: None) -> Iterator[dict[str, Any]]:
    annotations = _read_json(path, dict)
    for video_id, video in annotations.items():
        location = f"video {video_id!r}"
        where = f"{path}, {location}"
        fps = _number(_get(video, "fps", where), f"{where}: fps")
        if fps <= 0:
            raise ValueError(f"{where}: fps must be positive, got {fps}.")
        duration = _number(_get(video, "num_frames", where), f"{where}: num_frames") / fps
        timestamps, sentences = _get(video, "timestamps", where), _get(video, "sentences", where)
        _check_same_length(timestamps, sentences, where)
        for index, (frames, sentence) in enumerate(zip(timestamps, sentences)):
            moment = [_number(frame, f"{where}: timestamp {index}") / fps for frame in _pair(frames, where)]
            yield _record(
                f"{video_id}#{index}", video_id, duration, sentence, [moment], path, f"{location}, sentence {index}"
            )


def _qvhighlights(path: Path, durations: None) -> Iterator[dict[str, Any]]:
    for line_number, line in _lines(path):
        where = f"{path}, line {line_number}"
        query = _json_object_line(line, where)
        if "relevant_windows" not in query:
            raise ValueError(
                f"{where}: no 'relevant_windows'. QVHighlights' test split hides its ground truth; only files "
                "with windows can be loaded for training or evaluation."
            )
        record = _record(
            str(_get(query, "qid", where)),
            str(_get(query, "vid", where)),
            _get(query, "duration", where),
            _get(query, "query", where),
            query["relevant_windows"],
            path,
            f"line {line_number}",
            line=line,
        )
        yield {**record, **_qvhighlights_saliency(query, where)}


def _qvhighlights_saliency(query: dict, where: str) -> dict[str, list | None]:
    """The `relevant_clip_ids` and `saliency_scores` of a QVHighlights line, checked; `None` for those it lacks."""
    clip_ids, scores = query.get("relevant_clip_ids"), query.get("saliency_scores")
    if clip_ids is not None:
        if not isinstance(clip_ids, list) or not all(isinstance(clip, int) and clip >= 0 for clip in clip_ids):
            raise ValueError(
                f"{where}: 'relevant_clip_ids' must be a list of clip indices >= 0, got {clip_ids!r:.80}."
            )
    if scores is not None:
        if not isinstance(scores, list) or not all(isinstance(row, list) for row in scores):
            raise ValueError(
                f"{where}: 'saliency_scores' must be a list of per-annotator score lists, got {scores!r:.80}."
            )
        scores = [[_number(score, f"{where}: saliency_scores") for score in row] for row in scores]
    if clip_ids is not None and scores is not None and len(clip_ids) != len(scores):
        raise ValueError(
            f"{where}: 'saliency_scores' must have one row per relevant clip; got {len(scores)} rows for "
            f"{len(clip_ids)} 'relevant_clip_ids'."
        )
    return {"relevant_clip_ids": clip_ids, "saliency_scores": scores}


def write_qvhighlights_submission(
    path: str | os.PathLike,
    queries: Sequence[Mapping],
    predictions: Sequence | None = None,
    saliency_predictions: Sequence[Sequence[float]] | None = None,
) -> Path:
    """
    Write predictions in the QVHighlights submission format (Moment-DETR's `standalone_eval`, the leaderboard's):
    one JSON object a line, `{"qid", "query", "vid", "pred_relevant_windows": [[start, end, score], ...],
    "pred_saliency_scores": [one score per 2-second clip, in order]}`. Its `eval.py` scores moment retrieval when
    the lines have `pred_relevant_windows` and highlight detection when they have `pred_saliency_scores`.

    Args:
        path (`str` or `os.PathLike`): The `.jsonl` file to write (e.g. `hl_val_submission.jsonl`).
        queries (`Sequence[Mapping]`): The queries, in order: rows of `load_grounding_dataset("qvhighlights", ...)`
            (`query_id`, `query`, `video_id`) or lines of a QVHighlights file (`qid`, `query`, `vid`; the test split
            has no ground truth, so read its lines with `json`). Numeric query ids are written as integers, as the
            ground-truth files have them.
        predictions (`Sequence`, *optional*): Per query, its scored moments in seconds, rows `[start, end, score]` or
            dicts as `post_process_grounding` returns them; written best first.
        saliency_predictions (`Sequence[Sequence[float]]`, *optional*): Per query, a score for each 2-second clip of
            the video.

    Returns:
        `Path`: the file written.
    """
    if predictions is None and saliency_predictions is None:
        raise ValueError("Nothing to write: give `predictions` (scored moments) and / or `saliency_predictions`.")
    for name, values in (("predictions", predictions), ("saliency_predictions", saliency_predictions)):
        if values is not None and len(values) != len(queries):
            raise ValueError(f"Got {len(queries)} queries and {len(values)} {name}; give one per query.")
    lines = []
    for index, query in enumerate(queries):
        query_id = _first_field(query, ("query_id", "qid"), index)
        line = {
            "qid": int(query_id) if str(query_id).isdecimal() else query_id,
            "query": _first_field(query, ("query",), index),
            "vid": _first_field(query, ("video_id", "vid"), index),
        }
        if predictions is not None:
            moments, scores = as_ranked_moments(predictions[index], f"predictions[{index}]")
            if not len(moments):
                raise ValueError(
                    f"predictions[{index}] has no moment; the leaderboard's evaluation needs a window for every query."
                )
            if scores is None:
                raise ValueError(
                    f"predictions[{index}] has moments without scores; the submission needs [start, end, score]."
                )
            line["pred_relevant_windows"] = [
                [start, end, score] for (start, end), score in zip(moments.tolist(), scores.tolist())
            ]
        if saliency_predictions is not None:
            line["pred_saliency_scores"] = _finite_numbers(
                saliency_predictions[index], f"saliency_predictions[{index}]"
            )
        lines.append(json.dumps(line))
    path = Path(path)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def read_qvhighlights_submission(path: str | os.PathLike) -> list[dict[str, Any]]:
    """
    Read a QVHighlights submission file (see [`write_qvhighlights_submission`]), checking it as the leaderboard's
    evaluation needs it.

    Returns:
        `list[dict]`: one dict per line, in file order, with `"qid"` (a string, as `query_id` in the loaded
        dataset), `"query"` and `"vid"` (`None` when absent), `"pred_relevant_windows"` (`[[start, end, score], ...]`
        in the file's order) and `"pred_saliency_scores"` (`None` when the file has no such field).

    Raises:
        `FileNotFoundError`: no such file.
        `ValueError`: a line that is not a JSON object, lacks `qid`, repeats an earlier `qid`, has malformed windows
            or scores, or has other prediction fields than the first line (the message names the file and the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No QVHighlights submission file at {path}.")
    rows, first_line_of, prediction_fields = [], {}, None
    for line_number, line in _lines(path):
        where = f"{path}, line {line_number}"
        entry = _json_object_line(line, where)
        query_id = str(_get(entry, "qid", where))
        if query_id in first_line_of:
            raise ValueError(
                f"{where}: qid {query_id} repeats line {first_line_of[query_id]}; give one line per query."
            )
        first_line_of[query_id] = line_number
        fields = {"pred_relevant_windows", "pred_saliency_scores"} & set(entry)
        if not fields:
            raise ValueError(f"{where}: no 'pred_relevant_windows' or 'pred_saliency_scores'.")
        if prediction_fields is None:
            prediction_fields = fields
        elif fields != prediction_fields:
            raise ValueError(
                f"{where}: has {sorted(fields)} but the first line has {sorted(prediction_fields)}; every line must "
                "give the same predictions."
            )
        windows = entry.get("pred_relevant_windows")
        if windows is not None:
            if not isinstance(windows, list):
                raise ValueError(f"{where}: 'pred_relevant_windows' must be a list, got {windows!r:.80}.")
            windows = [
                _scored_window(window, f"{where}: pred_relevant_windows[{index}]")
                for index, window in enumerate(windows)
            ]
        scores = entry.get("pred_saliency_scores")
        if scores is not None:
            scores = _finite_numbers(scores, f"{where}: pred_saliency_scores")
        rows.append(
            {
                "qid": query_id,
                "query": entry.get("query"),
                "vid": None if entry.get("vid") is None else str(entry["vid"]),
                "pred_relevant_windows": windows,
                "pred_saliency_scores": scores,
            }
        )
    if not rows:
        raise ValueError(f"{path} has no predictions.")
    return rows


def _first_field(query: Mapping, names: tuple[str, ...], index: int):
    """The value of the first of `names` that `query` has (the package's column name, then the file's)."""
    for name in names:
        if name in query:
            return query[name]
    raise ValueError(f"queries[{index}] has none of {list(names)}; it has {sorted(query)}.")


def _scored_window(window, where: str) -> list[float]:
    if not isinstance(window, list) or len(window) != 3:
        raise ValueError(f"{where}: expected [start, end, score], got {window!r}.")
    start, end, score = (_number(value, where) for value in window)
    if end < start:
        raise ValueError(f"{where}: the window ends before it starts: {window!r}.")
    return [start, end, score]


def _finite_numbers(values, where: str) -> list[float]:
    values = values.tolist() if hasattr(values, "tolist") else values
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{where}: expected a non-empty list of clip scores, got {values!r:.80}.")
    return [_number(value, where) for value in values]


def _didemo(path: Path, durations: Mapping[str, float] | None) -> Iterator[dict[str, Any]]:
    for position, query in enumerate(_read_json(path, list)):
        where = f"{path}, entry {position}"
        video_id = str(_get(query, "video", where))
        if durations is None:
            duration = DIDEMO_SEGMENT_SECONDS * _number(_get(query, "num_segments", where), f"{where}: num_segments")
        elif video_id in durations:
            duration = durations[video_id]
        else:
            raise ValueError(f"{where}: video {video_id!r} has no duration in the durations given.")
        segments = _get(query, "times", where)
        if not isinstance(segments, list):
            raise ValueError(f"{where}: 'times' must be a list of [first, last] segment pairs, got {segments!r}.")
        segments = [[_number(index, f"{where}: times") for index in _pair(pair, where)] for pair in segments]
        moments = [[DIDEMO_SEGMENT_SECONDS * first, DIDEMO_SEGMENT_SECONDS * (last + 1)] for first, last in segments]
        yield _record(
            str(_get(query, "annotation_id", where)), video_id, duration, _get(query, "description", where), moments,
            path, f"entry {position}",
        )


_READERS = {
    "charades_sta": _charades_sta,
    "activitynet_captions": _activitynet_captions,
    "tacos": _tacos,
    "qvhighlights": _qvhighlights,
    "didemo": _didemo,
}
GROUNDING_DATASETS = tuple(_READERS)


def _record(
    query_id: str, video_id: str, duration, sentence, moments, path: Path, location: str, line: str | None = None
) -> dict[str, Any]:
    """
    A query in the schema, checked, with its `location` in the file and, for one-query-a-line files, its `line`
    (whose exact repeats are dropped).
    """
    where = f"{path}, {location}"
    duration = _number(duration, f"{where}: duration")
    if duration <= 0:
        raise ValueError(f"{where}: video {video_id!r} has a duration of {duration} s; it must be positive.")
    if not isinstance(sentence, str):
        raise ValueError(f"{where}: the sentence must be a string, got {sentence!r}.")
    if not isinstance(moments, list):
        raise ValueError(f"{where}: the moments must be a list of [start, end] pairs, got {moments!r}.")
    moments = [[_number(value, f"{where}: moment") for value in _pair(moment, where)] for moment in moments]
    return {
        "query_id": query_id,
        "video_id": video_id,
        "duration": duration,
        "query": sentence.strip(),
        "moments": moments,
        "relevant_clip_ids": None,
        "saliency_scores": None,
        "location": location,
        "line": line,
    }


def _pair(value, where: str) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{where}: expected a [start, end] pair, got {value!r}.")
    return list(value)


def _number(value, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: expected a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{where}: expected a finite number, got {value!r}.")
    return number


def _get(entry, key: str, where: str):
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(entry).__name__}.")
    if key not in entry:
        raise ValueError(f"{where}: missing the {key!r} field (it has {sorted(entry)}).")
    return entry[key]


def _check_same_length(timestamps, sentences, where: str) -> None:
    if not isinstance(timestamps, list) or not isinstance(sentences, list) or len(timestamps) != len(sentences):
        raise ValueError(f"{where}: 'timestamps' and 'sentences' must be lists of the same length.")


def _read_utf8(path: Path) -> str:
    """
    The text of an annotation file, without a leading byte order mark. A file that is not UTF-8 is a `ValueError`
    that names it, the byte offset and the line.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path} is not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} (line {line}): "
            f"{error.reason}. Annotation files must be UTF-8; re-encode it, e.g. from Latin-1 with "
            "`iconv -f latin1 -t utf-8`."
        ) from error
    return text.removeprefix("\ufeff")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """`(line number, line)` for each line that is not blank, stripped; lines end as `open()` ends them."""
    for line_number, line in enumerate(io.StringIO(_read_utf8(path), newline=None), start=1):
        if line.strip():
            yield line_number, line.strip()


def _json_object_line(line: str, where: str) -> dict:
    try:
        content = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error}).") from error
    if not isinstance(content, dict):
        raise ValueError(f"{where}: expected a JSON object (one a line), got a {type(content).__name__}: {line:.60}")
    return content


def _read_json(path: Path, expected_type: type = object):
    try:
        content = json.loads(_read_utf8(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from error
    if not isinstance(content, expected_type):
        raise ValueError(
            f"{path}: expected a JSON {expected_type.__name__} at the top level, got {type(content).__name__}."
        )
    return content


def _charades_metadata_file(annotation_file: Path) -> Path:
    split = annotation_file.stem.removeprefix("charades_sta_")
    candidate = annotation_file.with_name(f"Charades_v1_{split}.csv")
    if not candidate.is_file():
        raise FileNotFoundError(
            f"Charades-STA durations are not in {annotation_file.name}: pass `durations` (the Charades "
            f"Charades_v1_{{split}}.csv metadata file or a {{video_id: seconds}} mapping); looked for {candidate}."
        )
    return candidate


def _read_durations_csv(path: Path) -> dict[str, float]:
    if not path.is_file():
        raise FileNotFoundError(f"No durations file at {path}.")
    with io.StringIO(_read_utf8(path), newline="") as file:
        reader = csv.DictReader(file)
        missing = {"id", "length"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: a durations CSV needs 'id' and 'length' columns; {sorted(missing)} missing.")
        return {row["id"]: _number(row["length"], f"{path}, line {reader.line_num}: length") for row in reader}
