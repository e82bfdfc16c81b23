"""
Loaders of the temporal grounding benchmarks' annotation files into one `datasets` schema.

Every loader gives rows of [`GROUNDING_FEATURES`]: `query_id`, `video_id`, `duration` (seconds), `query` and
`moments` (a list of `[start, end]` in seconds; several for QVHighlights windows and DiDeMo annotators). Moments that
reach outside `[0, duration]` are clipped to it; moments with `start >= end` after clipping are dropped, and queries
left without a moment are dropped. Both are counted in a [`GroundingLoadReport`], logged, and written into the
dataset's `info.description`.
"""

import csv
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from transformers.utils import logging


logger = logging.get_logger(__name__)

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


@dataclass
class GroundingLoadReport:
    """
    What a loader kept, clipped and dropped.

    Attributes:
        dataset (`str`): The format's name, e.g. `"charades_sta"`.
        annotation_file (`str`): The file read.
        num_queries_read (`int`): Queries in the file.
        num_moments_read (`int`): Moments in the file (one per query, or several).
        num_queries (`int`): Queries kept.
        num_moments (`int`): Moments kept.
        num_videos (`int`): Distinct videos among the queries kept.
        num_moments_clipped (`int`): Kept moments that reached outside `[0, duration]` and were clipped to it.
        num_moments_dropped (`int`): Moments dropped because `start >= end` (as given, or once clipped to the video).
        num_queries_dropped (`int`): Queries dropped because none of their moments was left.
        dropped_query_ids (`list[str]`): The `query_id` of each dropped query.
    """

    dataset: str
    annotation_file: str
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
            f"(start >= end), {self.num_queries_dropped} queries dropped (no moment left)."
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
        `ValueError`: an unknown `name`, or a malformed file (the message names the file and the line or entry).
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
        row = _clip_record(record, report)
        if row is not None:
            rows.append(row)
    report.num_queries = len(rows)
    report.num_moments = sum(len(row["moments"]) for row in rows)
    report.num_videos = len({row["video_id"] for row in rows})
    summary = report.summary()
    if report.num_moments_clipped or report.num_moments_dropped:
        logger.warning(summary)
    else:
        logger.info(summary)

    info = datasets.DatasetInfo(description=summary, features=GROUNDING_FEATURES)
    columns = {column: [row[column] for row in rows] for column in GROUNDING_FEATURES}
    # straight to Arrow: the rows already hold the schema's plain types, so datasets' per-value encoding is not needed
    dataset = datasets.Dataset(pa.Table.from_pydict(columns, schema=GROUNDING_FEATURES.arrow_schema), info=info)
    return (dataset, report) if return_report else dataset


def _clip_record(record: dict[str, Any], report: GroundingLoadReport) -> dict[str, Any] | None:
    """Clip a record's moments to `[0, duration]`, drop empty ones, and count both in `report`."""
    duration = record["duration"]
    kept = []
    report.num_queries_read += 1
    for start, end in record["moments"]:
        report.num_moments_read += 1
        clipped_start, clipped_end = max(start, 0.0), min(end, duration)
        if clipped_start >= clipped_end:
            report.num_moments_dropped += 1
            continue
        if (clipped_start, clipped_end) != (start, end):
            report.num_moments_clipped += 1
        kept.append([clipped_start, clipped_end])
    if not kept:
        report.num_queries_dropped += 1
        report.dropped_query_ids.append(record["query_id"])
        return None
    return {**record, "moments": kept}


def _charades_sta(path: Path, durations: Mapping[str, float]) -> Iterator[dict[str, Any]]:
    sentences_per_video: dict[str, int] = {}
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_number}"
            head, separator, sentence = line.partition("##")
            fields = head.split()
            if not separator or len(fields) != 3:
                raise ValueError(f"{where}: expected 'VIDEO_ID START END##SENTENCE', got {line.rstrip()!r}.")
            video_id = fields[0]
            if video_id not in durations:
                raise ValueError(f"{where}: video {video_id!r} has no duration in the durations given.")
            index = sentences_per_video.get(video_id, 0)
            sentences_per_video[video_id] = index + 1
            yield _record(
                f"{video_id}#{index}", video_id, durations[video_id], sentence, [fields[1:]], where
            )


def _activitynet_captions(path: Path, durations: None) -> Iterator[dict[str, Any]]:
    annotations = _read_json(path, dict)
    for video_id, video in annotations.items():
        where = f"{path}, video {video_id!r}"
        timestamps, sentences = _get(video, "timestamps", where), _get(video, "sentences", where)
        _check_same_length(timestamps, sentences, where)
        for index, (moment, sentence) in enumerate(zip(timestamps, sentences)):
            yield _record(f"{video_id}#{index}", video_id, _get(video, "duration", where), sentence, [moment], where)


def _tacos(path: Path, durations: None) -> Iterator[dict[str, Any]]:
    annotations = _read_json(path, dict)
    for video_id, video in annotations.items():
        where = f"{path}, video {video_id!r}"
        fps = _number(_get(video, "fps", where), f"{where}: fps")
        if fps <= 0:
            raise ValueError(f"{where}: fps must be positive, got {fps}.")
        duration = _number(_get(video, "num_frames", where), f"{where}: num_frames") / fps
        timestamps, sentences = _get(video, "timestamps", where), _get(video, "sentences", where)
        _check_same_length(timestamps, sentences, where)
        for index, (frames, sentence) in enumerate(zip(timestamps, sentences)):
            moment = [_number(frame, f"{where}: timestamp {index}") / fps for frame in _pair(frames, where)]
            yield _record(f"{video_id}#{index}", video_id, duration, sentence, [moment], where)


def _qvhighlights(path: Path, durations: None) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_number}"
            try:
                query = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error}).") from error
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
                where,
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
            where,
        )


_READERS = {
    "charades_sta": _charades_sta,
    "activitynet_captions": _activitynet_captions,
    "tacos": _tacos,
    "qvhighlights": _qvhighlights,
    "didemo": _didemo,
}
GROUNDING_DATASETS = tuple(_READERS)


def _record(query_id: str, video_id: str, duration, sentence, moments, where: str) -> dict[str, Any]:
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


def _read_json(path: Path, expected_type: type):
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
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
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        missing = {"id", "length"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: a durations CSV needs 'id' and 'length' columns; {sorted(missing)} missing.")
        return {row["id"]: _number(row["length"], f"{path}, line {reader.line_num}: length") for row in reader}
