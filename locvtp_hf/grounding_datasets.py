"""
Loaders of the temporal grounding benchmarks' annotation files into one `datasets` schema.

Every loader gives rows of [`GROUNDING_FEATURES`]: `query_id`, `video_id`, `duration` (seconds), `query` and
`moments` (a list of `[start, end]` in seconds; several for QVHighlights windows and DiDeMo annotators). Moments that
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from transformers.utils import logging


GROUNDING_FEATURES = datasets.Features(
    {
        "query_id": datasets.Value("string"),
        "video_id": datasets.Value("string"),
        "duration": datasets.Value("float64"),
        "query": datasets.Value("string"),
        "moments": datasets.List(datasets.List(datasets.Value("float64"), length=2)),
    }
)
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
    Load a temporal grounding annotation file into the [`GROUNDING_FEATURES`] schema.

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

    info = datasets.DatasetInfo(description=summary, features=GROUNDING_FEATURES)
    columns = {column: [row[column] for row in rows] for column in GROUNDING_FEATURES}
    # straight to Arrow: the rows already hold the schema's plain types, so datasets' per-value encoding is not needed
    dataset = datasets.Dataset(pa.Table.from_pydict(columns, schema=GROUNDING_FEATURES.arrow_schema), info=info)
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
        yield _record(
            str(_get(query, "qid", where)),
            str(_get(query, "vid", where)),
            _get(query, "duration", where),
            _get(query, "query", where),
            query["relevant_windows"],
            path,
            f"line {line_number}",
            line=line,
        )


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
