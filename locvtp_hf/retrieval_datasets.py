"""Text-video retrieval benchmarks read into one `datasets` schema ([`RETRIEVAL_FEATURES`]), one row per video:

- `video_id` (string): the benchmark's id of the video;
- `video` (string): the video file, `<video_dir>/<video_id><extension>`, or the id itself when no `video_dir` is
  given (for a `load_video` function, e.g. the synthetic world's `render`);
- `captions` (list of strings): the texts that describe the video (one paragraph for paragraph-to-video benchmarks).

Readers: MSR-VTT (the 1k-A split), DiDeMo and ActivityNet Captions as paragraph-to-video retrieval, a generic
(video, caption) jsonl, and the synthetic world's video-level captions. See docs/retrieval.md.
"""

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import numpy as np
import torch

from .synthetic_world import SyntheticWorld


RETRIEVAL_FEATURES = datasets.Features(
    video_id=datasets.Value("string"),
    video=datasets.Value("string"),
    captions=datasets.List(datasets.Value("string")),
)
DATASET_NAMES = ("synthetic", "msrvtt", "didemo", "activitynet", "jsonl")


def _video_location(video_id: str, video_dir: str | Path | None, extension: str) -> str:
    return str(Path(video_dir) / f"{video_id}{extension}") if video_dir is not None else video_id


def _rows_from_captions(
    captions_of_video: dict[str, list[str]], video_dir: str | Path | None, extension: str
) -> datasets.Dataset:
    rows = [
        {"video_id": video_id, "video": _video_location(video_id, video_dir, extension), "captions": captions}
        for video_id, captions in captions_of_video.items()
    ]
    return datasets.Dataset.from_list(rows, features=RETRIEVAL_FEATURES)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _read_records(path: Path) -> list[dict]:
    """The records of a `.jsonl` file (one JSON object a line) or of a `.json` file holding a list of objects."""
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error}).") from error
        return records
    records = _read_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a list of {{'video', 'caption'}} objects, got a {type(records).__name__}.")
    return records


def _caption_list(caption, where: str) -> list[str]:
    captions = [caption] if isinstance(caption, str) else caption
    if not isinstance(captions, list) or not all(isinstance(text, str) for text in captions):
        raise ValueError(f"{where}: 'caption' must be a string or a list of strings, got {caption!r}.")
    captions = [text.strip() for text in captions if text.strip()]
    if not captions:
        raise ValueError(f"{where}: the caption is empty.")
    return captions


def _records_to_captions(records: Sequence[dict], path: Path, video_id_of) -> tuple[dict[str, list[str]], dict]:
    """Captions grouped by video id (videos and captions in file order), and each video id's `video` value."""
    captions_of_video, video_of_id = {}, {}
    for number, record in enumerate(records, start=1):
        where = f"{path}, record {number}"
        if not isinstance(record, dict) or "video" not in record or "caption" not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{where} needs the keys 'video' and 'caption', got {keys}.")
        video_id = str(record.get("video_id") or video_id_of(str(record["video"])))
        captions_of_video.setdefault(video_id, []).extend(_caption_list(record["caption"], where))
        video_of_id.setdefault(video_id, str(record["video"]))
    if not captions_of_video:
        raise ValueError(f"{path} has no records.")
    return captions_of_video, video_of_id


def jsonl_retrieval(path: str | Path, video_dir: str | Path | None = None) -> datasets.Dataset:
    """
    A generic retrieval set: a `.jsonl` file, one `{"video": ..., "caption": ...}` object a line (or a `.json` file
    holding a list of them). `caption` is a string or a list of strings; records of the same video are merged, with
    the captions in file order. `video` is a file path, relative to `video_dir` (default: the file's folder) unless
    absolute; `video_id` defaults to `video` as written.
    """
    path = Path(path)
    base = Path(video_dir) if video_dir is not None else path.parent
    captions_of_video, video_of_id = _records_to_captions(_read_records(path), path, video_id_of=str)
    rows = [
        {"video_id": video_id, "video": str(base / video_of_id[video_id]), "captions": captions}
        for video_id, captions in captions_of_video.items()
    ]
    return datasets.Dataset.from_list(rows, features=RETRIEVAL_FEATURES)


def _read_video_ids(video_ids: str | Path | Iterable[str]) -> list[str]:
    """Ids from a sequence, a CSV with a `video_id` column (e.g. `MSRVTT_train.9k.csv`) or a text file, one a line."""
    if isinstance(video_ids, (str, Path)):
        path = Path(video_ids)
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as file:
                reader = csv.DictReader(file)
                if "video_id" not in (reader.fieldnames or []):
                    raise ValueError(f"{path} has no 'video_id' column (it has {reader.fieldnames}).")
                return [row["video_id"].strip() for row in reader]
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [str(video_id) for video_id in video_ids]


def msrvtt_retrieval(
    annotations: str | Path,
    video_dir: str | Path | None = None,
    video_ids: str | Path | Iterable[str] | None = None,
    extension: str = ".mp4",
) -> datasets.Dataset:
    """
    MSR-VTT, in any of its usual releases:

    - the 1k-A test CSV (`MSRVTT_JSFUSION_test.csv`: `key,vid_key,video_id,sentence`, 1,000 videos with one caption
      each), comma- or semicolon-separated (the delimiter is read from the header);
    - `MSRVTT_data.json` / `*_videodatainfo.json` (`{"videos": [{"video_id", ...}], "sentences": [{"video_id",
      "caption"}]}`: 20 captions per video), where `video_ids` picks a split, e.g. `MSRVTT_train.9k.csv` for the
      1k-A training set (9,000 videos, 180,000 captions);
    - a `.json` list or `.jsonl` of `{"video": "video7020.mp4", "caption": ...}` records (ids are the file stems).

    Args:
        annotations: the annotation file.
        video_dir: the folder of the videos; `video` is then `<video_dir>/<video_id><extension>`.
        video_ids: keep only these videos, in this order: a sequence of ids, a CSV with a `video_id` column, or a text
            file with one id a line. Every id must have captions.
        extension: of the video files.
    """
    path = Path(annotations)
    if path.suffix == ".csv":
        captions_of_video = _msrvtt_csv_captions(path)
    elif path.suffix in (".json", ".jsonl"):
        data = _read_records(path) if path.suffix == ".jsonl" else _read_json(path)
        if isinstance(data, dict):
            captions_of_video = _msrvtt_json_captions(data, path)
        elif isinstance(data, list):
            captions_of_video, _ = _records_to_captions(data, path, video_id_of=lambda video: Path(video).stem)
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
        captions_of_video = {video_id: texts for video_id, texts in captions_of_video.items() if texts}
    return _rows_from_captions(captions_of_video, video_dir, extension)


def _msrvtt_json_captions(data: dict, path: Path) -> dict[str, list[str]]:
    if "sentences" not in data:
        raise ValueError(f"{path} has no 'sentences' list (it has {sorted(data)}): not an MSR-VTT JSON.")
    captions_of_video = {str(video["video_id"]): [] for video in data.get("videos", [])}
    for number, sentence in enumerate(data["sentences"]):
        if not isinstance(sentence, dict) or "video_id" not in sentence or "caption" not in sentence:
            raise ValueError(f"{path}, sentences[{number}] needs 'video_id' and 'caption', got {sentence!r}.")
        captions_of_video.setdefault(str(sentence["video_id"]), []).append(sentence["caption"].strip())
    return captions_of_video


def _msrvtt_csv_captions(path: Path) -> dict[str, list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        header = file.readline()
        delimiter = ";" if header.count(";") > header.count(",") else ","
        file.seek(0)
        reader = csv.DictReader(file, delimiter=delimiter)
        if not {"video_id", "sentence"} <= set(reader.fieldnames or []):
            raise ValueError(
                f"{path} needs the columns video_id and sentence (key,vid_key,video_id,sentence), got "
                f"{reader.fieldnames}."
            )
        captions_of_video = {}
        for number, row in enumerate(reader, start=2):
            if row["sentence"] is None or not row["sentence"].strip():
                raise ValueError(f"{path}, line {number}: no sentence.")
            captions_of_video.setdefault(row["video_id"].strip(), []).append(row["sentence"].strip())
    return captions_of_video


def _paragraph(moments: list[tuple[float, float, int, str]]) -> str:
    """The sentences joined with spaces, in temporal order: by start, then end, then order in the file."""
    return " ".join(sentence for *_, sentence in sorted(moments))


def didemo_paragraphs(
    annotations: str | Path, video_dir: str | Path | None = None, extension: str = ""
) -> datasets.Dataset:
    """
    DiDeMo as paragraph-to-video retrieval: one row per video whose single caption is all of its descriptions
    joined with spaces in temporal order. A description's moment is the mean over its annotators of the 5-second
    segment indices (`times`); ties keep the file's order.

    Args:
        annotations: a DiDeMo file (`train_data.json`, `val_data.json`, `test_data.json`: a list of `{video,
            description, times, ...}`).
        video_dir, extension: `video` is `<video_dir>/<video><extension>`; DiDeMo's video names already carry an
            extension (`..._dc1a90b8ef.mov`), so `extension` is empty by default (`".mp4"` for re-encoded copies
            named `<video>.mp4`).
    """
    path = Path(annotations)
    records = _read_json(path)
    if not isinstance(records, list):
        raise ValueError(f"{path} must hold a list of {{video, description, times}} objects.")
    moments_of_video: dict[str, list] = {}
    for number, record in enumerate(records):
        missing = {"video", "description", "times"} - set(record)
        if missing:
            raise ValueError(f"{path}, entry {number}: missing {sorted(missing)}.")
        if not record["times"]:
            raise ValueError(f"{path}, entry {number} ({record['video']}): 'times' is empty.")
        description = record["description"].strip()
        if not description:
            continue
        times = np.asarray(record["times"], dtype=np.float64)
        moment = (float(times[:, 0].mean()), float(times[:, 1].mean()), number, description)
        moments_of_video.setdefault(record["video"], []).append(moment)
    captions = {video: [_paragraph(moments)] for video, moments in moments_of_video.items()}
    return _rows_from_captions(captions, video_dir, extension)


def activitynet_paragraphs(
    annotations: str | Path, video_dir: str | Path | None = None, extension: str = ".mp4"
) -> datasets.Dataset:
    """
    ActivityNet Captions as paragraph-to-video retrieval: one row per video whose single caption is its sentences
    (stripped) joined with spaces in temporal order (by start, then end, then file order).

    Args:
        annotations: `train.json`, `val_1.json` or `val_2.json` (`{video_id: {"duration", "timestamps",
            "sentences"}}`).
        video_dir, extension: `video` is `<video_dir>/<video_id><extension>`.
    """
    path = Path(annotations)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map video ids to {{timestamps, sentences}}.")
    captions = {}
    for video_id, entry in data.items():
        if len(entry["timestamps"]) != len(entry["sentences"]):
            raise ValueError(
                f"{path}, video {video_id}: {len(entry['timestamps'])} timestamps but {len(entry['sentences'])} "
                "sentences."
            )
        moments = [
            (float(start), float(end), number, sentence.strip())
            for number, ((start, end), sentence) in enumerate(zip(entry["timestamps"], entry["sentences"]))
            if sentence.strip()
        ]
        if moments:
            captions[video_id] = [_paragraph(moments)]
    return _rows_from_captions(captions, video_dir, extension)


def synthetic_retrieval(world: SyntheticWorld | None = None, split: str = "test") -> datasets.Dataset:
    """
    The synthetic world's video-level captions (every event's sentence in temporal order): one caption per video.
    `video` is the video id, which `world.render` turns into frames (at `world.fps`).
    """
    world = world if world is not None else SyntheticWorld()
    captions = world.captions(split)
    rows = [
        {"video_id": video_id, "video": video_id, "captions": [caption]}
        for video_id, caption in zip(captions["video_id"], captions["caption"])
    ]
    return datasets.Dataset.from_list(rows, features=RETRIEVAL_FEATURES)


def load_retrieval_dataset(
    name: str,
    annotations: str | Path | None = None,
    video_dir: str | Path | None = None,
    video_ids: str | Path | Iterable[str] | None = None,
    world: SyntheticWorld | None = None,
    split: str = "test",
) -> datasets.Dataset:
    """
    One of the readers by name: `"synthetic"` (`world`, `split`), `"msrvtt"`, `"didemo"`, `"activitynet"` or
    `"jsonl"` (`annotations`, `video_dir`; `video_ids` for MSR-VTT).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown retrieval dataset {name!r}: use one of {DATASET_NAMES}.")
    if name == "synthetic":
        return synthetic_retrieval(world, split)
    if annotations is None:
        raise ValueError(f"The {name} reader needs an annotation file.")
    if video_ids is not None and name != "msrvtt":
        raise ValueError("video_ids selects MSR-VTT videos (e.g. MSRVTT_train.9k.csv); other readers take none.")
    if name == "msrvtt":
        return msrvtt_retrieval(annotations, video_dir, video_ids)
    if name == "didemo":
        return didemo_paragraphs(annotations, video_dir)
    if name == "activitynet":
        return activitynet_paragraphs(annotations, video_dir)
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
    "activitynet_paragraphs",
    "didemo_paragraphs",
    "flatten_captions",
    "jsonl_retrieval",
    "load_retrieval_dataset",
    "msrvtt_retrieval",
    "synthetic_retrieval",
]
