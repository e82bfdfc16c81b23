"""Text-video retrieval benchmarks read into one `datasets` schema ([`RETRIEVAL_FEATURES`]), one row per video:

- `video_id` (string): the benchmark's id of the video;
- `video` (string): the video file, `<video_dir>/<video_id><extension>`, or the id itself when no `video_dir` is
  given (for a `load_video` function, e.g. the synthetic world's `render`);
- `captions` (list of strings): the texts that describe the video (one paragraph for paragraph-to-video benchmarks).

Readers: MSR-VTT (the 1k-A split), DiDeMo and ActivityNet Captions as paragraph-to-video retrieval, and a generic
(video, caption) jsonl; the synthetic world's video-level captions come in this schema from
`SyntheticWorld.retrieval_dataset` (`locvtp_hf.synthetic`). See docs/retrieval.md.

The file readers drop empty captions, captions without a video id, repeated DiDeMo `annotation_id`s and MSR-VTT
videos listed without a caption, and list each in a [`RetrievalLoadReport`] with its line or entry and the reason (one
of `locvtp_hf.grounding_datasets.DROP_REASONS`, shared with the grounding loaders); the report is logged, written into
the dataset's `info.description`, and returned with `return_report=True`. Files must be UTF-8.
"""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from .grounding_datasets import LoadReport, _json_object_line, _lines, _read_json, _read_utf8


RETRIEVAL_FEATURES = datasets.Features(
    video_id=datasets.Value("string"),
    video=datasets.Value("string"),
    captions=datasets.List(datasets.Value("string")),
)
DATASET_NAMES = ("synthetic", "msrvtt", "didemo", "activitynet", "jsonl")


@dataclass
class RetrievalLoadReport(LoadReport):
    """
    What a retrieval reader kept and dropped.

    Attributes:
        dataset (`str`): The reader, e.g. `"msrvtt"`.
        annotation_file (`str`): The file read.
        dropped (`list[DroppedRecord]`): Each caption or video left out, in file order, with its reason and video id.
        num_videos (`int`): Videos kept (rows).
        num_captions (`int`): Captions kept (paragraphs for the paragraph-to-video readers).
    """

    num_videos: int = 0
    num_captions: int = 0

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.dataset} ({self.annotation_file}): kept {self.num_videos} videos with {self.num_captions} "
            f"captions; {self._dropped_summary('captions or videos')}."
        )


def _video_location(video_id: str, video_dir: str | Path | None, extension: str) -> str:
    return str(Path(video_dir) / f"{video_id}{extension}") if video_dir is not None else video_id


def _dataset(rows: list[dict], report: RetrievalLoadReport, return_report: bool):
    """The dataset of `rows`, with the report in its description (and returned with `return_report`), logged."""
    report.num_videos = len(rows)
    report.num_captions = sum(len(row["captions"]) for row in rows)
    report.log()
    info = datasets.DatasetInfo(description=report.summary(), features=RETRIEVAL_FEATURES)
    dataset = datasets.Dataset.from_list(rows, features=RETRIEVAL_FEATURES, info=info)
    return (dataset, report) if return_report else dataset


def _rows_from_captions(
    captions_of_video: dict[str, list[str]], video_dir: str | Path | None, extension: str
) -> list[dict]:
    return [
        {"video_id": video_id, "video": _video_location(video_id, video_dir, extension), "captions": captions}
        for video_id, captions in captions_of_video.items()
    ]


def _numbered_records(records, path: Path) -> list[tuple[str, dict]]:
    """`(location, record)` for each record of a `.json` list."""
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a list of {{'video', 'caption'}} objects, got a {type(records).__name__}.")
    return [(f"record {number}", record) for number, record in enumerate(records, start=1)]


def _read_records(path: Path) -> list[tuple[str, dict]]:
    """
    `(location, record)` for each record of a `.jsonl` file (one JSON object a line) or of a `.json` file holding a
    list of objects.
    """
    if path.suffix == ".jsonl":
        return [(f"line {number}", _json_object_line(line, f"{path}, line {number}")) for number, line in _lines(path)]
    return _numbered_records(_read_json(path), path)


def _add_caption(
    captions_of_video: dict[str, list[str]], video_id: str, caption, path: Path, location: str,
    report: RetrievalLoadReport,
) -> None:
    """Append `caption`, stripped, to the video's captions; report it dropped if it or the video id is empty."""
    if not isinstance(caption, str):
        raise ValueError(f"{path}, {location}: a caption must be a string, got {caption!r}.")
    if not caption.strip():
        report.drop("empty_sentence", location, video_id)
    elif not video_id.strip():
        report.drop("empty_video_id", location, video_id)
    else:
        captions_of_video.setdefault(video_id, []).append(caption.strip())


def _records_to_captions(
    records: list[tuple[str, dict]], path: Path, video_id_of, report: RetrievalLoadReport
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Captions grouped by video id (videos and captions in file order), and each video id's `video` value."""
    if not records:
        raise ValueError(f"{path} has no records.")
    captions_of_video, video_of_id, first_location_of_id = {}, {}, {}
    for location, record in records:
        where = f"{path}, {location}"
        if not isinstance(record, dict) or "video" not in record or "caption" not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{where} needs the keys 'video' and 'caption', got {keys}.")
        video = str(record["video"])
        video_id = str(record.get("video_id") or video_id_of(video))
        if video_of_id.setdefault(video_id, video) != video:
            raise ValueError(
                f"{where}: video id {video_id!r} names the file {video!r}, but {first_location_of_id[video_id]} gave "
                f"it {video_of_id[video_id]!r}; a video id must name one video file."
            )
        first_location_of_id.setdefault(video_id, location)
        captions = record["caption"] if isinstance(record["caption"], list) else [record["caption"]]
        if not captions:
            report.drop("empty_sentence", location, video_id)
        for caption in captions:
            _add_caption(captions_of_video, video_id, caption, path, location, report)
    return captions_of_video, video_of_id


def jsonl_retrieval(
    path: str | Path, video_dir: str | Path | None = None, return_report: bool = False
) -> datasets.Dataset | tuple[datasets.Dataset, RetrievalLoadReport]:
    """
    A generic retrieval set: a `.jsonl` file, one `{"video": ..., "caption": ...}` object a line (or a `.json` file
    holding a list of them). `caption` is a string or a list of strings; records of the same video are merged, with
    the captions in file order. `video` is a file path, relative to `video_dir` (default: the file's folder) unless
    absolute; `video_id` defaults to `video` as written. Two records that give one `video_id` different `video` files
    are an error. Blank captions are dropped and listed in the [`RetrievalLoadReport`], returned with `return_report`.
    """
    path = Path(path)
    base = Path(video_dir) if video_dir is not None else path.parent
    report = RetrievalLoadReport("jsonl", str(path))
    captions_of_video, video_of_id = _records_to_captions(_read_records(path), path, str, report)
    rows = [
        {"video_id": video_id, "video": str(base / video_of_id[video_id]), "captions": captions}
        for video_id, captions in captions_of_video.items()
    ]
    return _dataset(rows, report, return_report)


def _file_stem(video: str) -> str:
    return Path(video).stem


def _read_video_ids(video_ids: str | Path | Iterable[str]) -> list[str]:
    """Ids from a sequence, a CSV with a `video_id` column (e.g. `MSRVTT_train.9k.csv`) or a text file, one a line."""
    if isinstance(video_ids, (str, Path)):
        path = Path(video_ids)
        if path.suffix == ".csv":
            reader = csv.DictReader(io.StringIO(_read_utf8(path), newline=""))
            if "video_id" not in (reader.fieldnames or []):
                raise ValueError(f"{path} has no 'video_id' column (it has {reader.fieldnames}).")
            return [row["video_id"].strip() for row in reader]
        return [line for _, line in _lines(path)]
    return [str(video_id) for video_id in video_ids]


def msrvtt_retrieval(
    annotations: str | Path,
    video_dir: str | Path | None = None,
    video_ids: str | Path | Iterable[str] | None = None,
    extension: str = ".mp4",
    return_report: bool = False,
) -> datasets.Dataset | tuple[datasets.Dataset, RetrievalLoadReport]:
    """
    MSR-VTT, in any of its usual releases:

    - the 1k-A test CSV (`MSRVTT_JSFUSION_test.csv`: `key,vid_key,video_id,sentence`, 1,000 videos with one caption
      each), comma- or semicolon-separated (the delimiter is read from the header);
    - `MSRVTT_data.json` / `*_videodatainfo.json` (`{"videos": [{"video_id", ...}], "sentences": [{"video_id",
      "caption"}]}`: 20 captions per video), where `video_ids` picks a split, e.g. `MSRVTT_train.9k.csv` for the
      1k-A training set (9,000 videos, 180,000 captions);
    - a `.json` list or `.jsonl` of `{"video": "video7020.mp4", "caption": ...}` records (ids are the file stems).

    Captions that are empty or blank (`"empty_sentence"`) or have an empty video id (`"empty_video_id"`) are dropped,
    and so are videos of the JSON's `videos` list without a caption (`"no_caption"`; with `video_ids`, a requested
    video without a caption is an error): each is listed in the [`RetrievalLoadReport`].

    Args:
        annotations: the annotation file.
        video_dir: the folder of the videos; `video` is then `<video_dir>/<video_id><extension>`.
        video_ids: keep only these videos, in this order: a sequence of ids, a CSV with a `video_id` column, or a text
            file with one id a line. Every id must have captions.
        extension: of the video files.
        return_report: also return the [`RetrievalLoadReport`].
    """
    path = Path(annotations)
    report = RetrievalLoadReport("msrvtt", str(path))
    if path.suffix == ".csv":
        captions_of_video = _msrvtt_csv_captions(path, report)
    elif path.suffix == ".jsonl":
        captions_of_video, _ = _records_to_captions(_read_records(path), path, _file_stem, report)
    elif path.suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict):
            captions_of_video = _msrvtt_json_captions(data, path, report)
        elif isinstance(data, list):
            captions_of_video, _ = _records_to_captions(_numbered_records(data, path), path, _file_stem, report)
        else:
            raise ValueError(f"{path} holds a {type(data).__name__}, not MSR-VTT annotations.")
    else:
        raise ValueError(f"{path}: MSR-VTT annotations are a .csv, .json or .jsonl file.")

    if video_ids is not None:
        wanted = _read_video_ids(video_ids)
        missing = [video_id for video_id in wanted if not captions_of_video.get(video_id)]
        if missing:
            raise ValueError(
                f"{len(missing)} of the {len(wanted)} requested videos have no caption in {path}, e.g. {missing[:5]}."
            )
        captions_of_video = {video_id: captions_of_video[video_id] for video_id in wanted}
    else:
        for video_id in [video_id for video_id, texts in captions_of_video.items() if not texts]:
            report.drop("no_caption", "the 'videos' list", video_id)
            del captions_of_video[video_id]
    return _dataset(_rows_from_captions(captions_of_video, video_dir, extension), report, return_report)


def _msrvtt_json_captions(data: dict, path: Path, report: RetrievalLoadReport) -> dict[str, list[str]]:
    if "sentences" not in data:
        raise ValueError(f"{path} has no 'sentences' list (it has {sorted(data)}): not an MSR-VTT JSON.")
    captions_of_video = {str(video["video_id"]): [] for video in data.get("videos", [])}
    for number, sentence in enumerate(data["sentences"]):
        location = f"sentences[{number}]"
        if not isinstance(sentence, dict) or "video_id" not in sentence or "caption" not in sentence:
            raise ValueError(f"{path}, {location} needs 'video_id' and 'caption', got {sentence!r}.")
        _add_caption(captions_of_video, str(sentence["video_id"]), sentence["caption"], path, location, report)
    return captions_of_video


def _msrvtt_csv_captions(path: Path, report: RetrievalLoadReport) -> dict[str, list[str]]:
    text = _read_utf8(path)
    header = text.partition("\n")[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not {"video_id", "sentence"} <= set(reader.fieldnames or []):
        raise ValueError(
            f"{path} needs the columns video_id and sentence (key,vid_key,video_id,sentence), got {reader.fieldnames}."
        )
    captions_of_video = {}
    for row in reader:
        location = f"line {reader.line_num}"
        _add_caption(captions_of_video, (row["video_id"] or "").strip(), row["sentence"] or "", path, location, report)
    return captions_of_video


def _paragraph(moments: list[tuple[float, float, int, str]]) -> str:
    """The sentences joined with spaces, in temporal order: by start, then end, then order in the file."""
    return " ".join(sentence for *_, sentence in sorted(moments))


def didemo_paragraphs(
    annotations: str | Path, video_dir: str | Path | None = None, extension: str = "", return_report: bool = False
) -> datasets.Dataset | tuple[datasets.Dataset, RetrievalLoadReport]:
    """
    DiDeMo as paragraph-to-video retrieval: one row per video whose single caption is all of its descriptions
    joined with spaces in temporal order. A description's moment is the mean over its annotators of the 5-second
    segment indices (`times`); ties keep the file's order. Empty descriptions (`"empty_sentence"`), entries without
    a video (`"empty_video_id"`) and repeats of an `annotation_id` (`"duplicate_query_id"`, the first is kept) are
    left out and listed in the [`RetrievalLoadReport`].

    Args:
        annotations: a DiDeMo file (`train_data.json`, `val_data.json`, `test_data.json`: a list of `{video,
            description, times, ...}`).
        video_dir, extension: `video` is `<video_dir>/<video><extension>`; DiDeMo's video names already carry an
            extension (`..._dc1a90b8ef.mov`), so `extension` is empty by default (`".mp4"` for re-encoded copies
            named `<video>.mp4`).
        return_report: also return the [`RetrievalLoadReport`].
    """
    path = Path(annotations)
    records = _read_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a list of {{video, description, times}} objects.")
    report = RetrievalLoadReport("didemo", str(path))
    moments_of_video: dict[str, list] = {}
    for number, record in enumerate(records):
        location = f"entry {number}"
        if not isinstance(record, dict):
            raise ValueError(f"{path}, {location}: expected a JSON object, got a {type(record).__name__}.")
        missing = {"video", "description", "times"} - set(record)
        if missing:
            raise ValueError(f"{path}, {location}: missing {sorted(missing)}.")
        video, description = str(record["video"]), record["description"].strip()
        if not record["times"]:
            raise ValueError(f"{path}, {location} ({video}): 'times' is empty.")
        if not description:
            report.drop("empty_sentence", location, video)
        elif not video:
            report.drop("empty_video_id", location, video)
        elif "annotation_id" not in record or not report.drop_if_repeat(
            "duplicate_query_id", str(record["annotation_id"]), location, video
        ):
            times = np.asarray(record["times"], dtype=np.float64)
            moment = (float(times[:, 0].mean()), float(times[:, 1].mean()), number, description)
            moments_of_video.setdefault(video, []).append(moment)
    captions = {video: [_paragraph(moments)] for video, moments in moments_of_video.items()}
    return _dataset(_rows_from_captions(captions, video_dir, extension), report, return_report)


def activitynet_paragraphs(
    annotations: str | Path, video_dir: str | Path | None = None, extension: str = ".mp4", return_report: bool = False
) -> datasets.Dataset | tuple[datasets.Dataset, RetrievalLoadReport]:
    """
    ActivityNet Captions as paragraph-to-video retrieval: one row per video whose single caption is its sentences
    (stripped) joined with spaces in temporal order (by start, then end, then file order). Empty sentences
    (`"empty_sentence"`) and videos with an empty id (`"empty_video_id"`) are left out and listed in the
    [`RetrievalLoadReport`].

    Args:
        annotations: `train.json`, `val_1.json` or `val_2.json` (`{video_id: {"duration", "timestamps",
            "sentences"}}`).
        video_dir, extension: `video` is `<video_dir>/<video_id><extension>`.
        return_report: also return the [`RetrievalLoadReport`].
    """
    path = Path(annotations)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map video ids to {{timestamps, sentences}}.")
    report = RetrievalLoadReport("activitynet", str(path))
    captions = {}
    for video_id, entry in data.items():
        if len(entry["timestamps"]) != len(entry["sentences"]):
            raise ValueError(
                f"{path}, video {video_id}: {len(entry['timestamps'])} timestamps but {len(entry['sentences'])} "
                "sentences."
            )
        if not video_id.strip():
            report.drop("empty_video_id", f"video {video_id!r}", video_id)
            continue
        moments = []
        for number, ((start, end), sentence) in enumerate(zip(entry["timestamps"], entry["sentences"])):
            if sentence.strip():
                moments.append((float(start), float(end), number, sentence.strip()))
            else:
                report.drop("empty_sentence", f"video {video_id!r}, sentence {number}", video_id)
        if moments:
            captions[video_id] = [_paragraph(moments)]
    return _dataset(_rows_from_captions(captions, video_dir, extension), report, return_report)


def load_retrieval_dataset(
    name: str,
    annotations: str | Path | None = None,
    video_dir: str | Path | None = None,
    video_ids: str | Path | Iterable[str] | None = None,
    world=None,
    split: str = "test",
    extension: str | None = None,
) -> datasets.Dataset:
    """
    One of the readers by name: `"synthetic"` (`world`, a `locvtp_hf.synthetic.SyntheticWorld`, and `split`: its
    `retrieval_dataset(split)`), `"msrvtt"`, `"didemo"`, `"activitynet"` or `"jsonl"` (`annotations`, `video_dir`;
    `video_ids` for MSR-VTT). `extension` is that of the video files for the readers that build file names from ids
    (MSR-VTT, DiDeMo, ActivityNet; e.g. `".webm"` for an ActivityNet download); `None`: the reader's default.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown retrieval dataset {name!r}: use one of {DATASET_NAMES}.")
    if extension is not None and name in ("synthetic", "jsonl"):
        raise ValueError(f"The {name} reader takes no extension: its rows name their video files.")
    named_files = {} if extension is None else {"extension": extension}
    if name == "synthetic":
        if world is None:
            # The world imports this module's schema, so this module never imports the world.
            raise ValueError(
                "The synthetic reader needs the world: load_retrieval_dataset('synthetic', world=SyntheticWorld(...)) "
                "with `from locvtp_hf.synthetic import SyntheticWorld`."
            )
        return world.retrieval_dataset(split)
    if annotations is None:
        raise ValueError(f"The {name} reader needs an annotation file.")
    if video_ids is not None and name != "msrvtt":
        raise ValueError("video_ids selects MSR-VTT videos (e.g. MSRVTT_train.9k.csv); other readers take none.")
    if name == "msrvtt":
        return msrvtt_retrieval(annotations, video_dir, video_ids, **named_files)
    if name == "didemo":
        return didemo_paragraphs(annotations, video_dir, **named_files)
    if name == "activitynet":
        return activitynet_paragraphs(annotations, video_dir, **named_files)
    return jsonl_retrieval(annotations, video_dir)


def flatten_captions(dataset: datasets.Dataset) -> tuple[list[str], torch.Tensor]:
    """
    All captions of a retrieval set as text queries.

    Returns:
        `(captions, text_to_video)`: the captions, video by video in row order, and `[num_captions]` the row of each
        caption's video.
    """
    captions, owners = [], []
    for row, video_captions in enumerate(dataset["captions"]):
        captions.extend(video_captions)
        owners.extend([row] * len(video_captions))
    return captions, torch.tensor(owners, dtype=torch.long)


class OneCaptionPerVideo:
    """
    Training rows `video_id`, `video`, `text` from a retrieval set: each video once per epoch with one of its
    captions, drawn from `(seed, epoch, row)`. A batch then never holds two captions of one video, which would be
    false negatives of the contrastive loss. Call `set_epoch` at every epoch.
    """

    def __init__(self, dataset: datasets.Dataset, seed: int = 0):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        row = self.dataset[index]
        choice = np.random.default_rng([self.seed, self.epoch, index]).integers(len(row["captions"]))
        return {"video_id": row["video_id"], "video": row["video"], "text": row["captions"][choice]}


__all__ = [
    "DATASET_NAMES",
    "OneCaptionPerVideo",
    "RETRIEVAL_FEATURES",
    "RetrievalLoadReport",
    "activitynet_paragraphs",
    "didemo_paragraphs",
    "flatten_captions",
    "jsonl_retrieval",
    "load_retrieval_dataset",
    "msrvtt_retrieval",
]
