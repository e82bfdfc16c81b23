"""
Per-clip features of whole videos for temporal grounding, as [`~encoding.encode_clip_features`] computes them in the
clip layout of `LocVTPProcessor(..., task="grounding")`: the two file layouts that `examples/extract_features.py`
writes and `examples/finetune_grounding.py` reads (see `docs/feature_extraction.md`).

- **A folder of safetensors files**, one per video, `<folder>/<video_id>.safetensors`: tensors `features`
  (`[num_clips, D]` float32, the output of [`~LocVTPForTemporalGrounding.get_clip_features`]) and `clip_spans`
  (`[num_clips, 2]` float32, seconds), and string metadata: `video_id`, `duration`, `video_fps`, `clip_seconds`
  (the stride: duration / num_clips), `num_clips`, and the extraction settings of [`FEATURES_INFO_FIELDS`]
  (the model's content hash and checkpoint name, feature dimension, clip layout). The folder's `features_info.json`
  holds those settings once.
- **One HDF5 file**: a dataset `file[video_id]` of shape `[num_clips, D]` per video at the top level (the layout
  2D-TAN's Charades-STA and TACoS loaders read with `file[video_id][:]`), with the per-video metadata above as its
  attributes (`clip_spans` an array attribute); the file's attributes hold the extraction settings.

Files are written under a temporary name and renamed when complete, so an interrupted run never leaves a truncated
file under a final name.
"""

import glob
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .data import VIDEO_EXTENSIONS
from .encoding import VideoClipFeatures


FEATURES_INFO_FILE = "features_info.json"
# The extraction settings every features file records, with their types. Two extractions that differ in any of them
# but `checkpoint` (where the model was loaded from, by name: the files may be shared) are not mixed in one output;
# `model_sha256` identifies the model itself (see `model_fingerprint`).
FEATURES_INFO_FIELDS = {
    "checkpoint": str,
    "model_sha256": str,
    "feature_dim": int,
    "grounding_clip_seconds": float,
    "grounding_max_clips": int,  # "" in files when there is no limit
    "frames_per_clip": int,
}
HDF5_SUFFIXES = (".h5", ".hdf5")
# Config entries that do not change what a model computes: where it was loaded from, how it was saved, and the
# fields of the task heads (`model_fingerprint` hashes the encoder only).
_UNHASHED_CONFIG_KEYS = ("_name_or_path", "architectures", "auto_map", "dtype", "torch_dtype", "transformers_version")
_TASK_HEAD_PREFIXES = ("grounding_", "retrieval_")


def model_fingerprint(model) -> str:
    """
    The SHA-256 of what a model's clip features depend on: the weights of its LocVTP encoder (the model itself, or
    the `.locvtp` of a task model; the task head is left out) and its config, without where it was loaded from and
    without the task heads' fields. A checkpoint has the same fingerprint under any path and as any LocVTP class; a
    checkpoint re-trained into the same folder gets another one. Compute it before casting the model to another
    dtype: the weights are hashed as they are.

    Args:
        model: a [`LocVTPModel`], or a task model built on one such as [`LocVTPForTemporalGrounding`].

    Returns:
        `str`: 64 hexadecimal digits.
    """
    encoder = getattr(model, "locvtp", model)
    config = {
        name: value
        for name, value in model.config.to_diff_dict().items()
        if not name.startswith(_TASK_HEAD_PREFIXES) and name not in _UNHASHED_CONFIG_KEYS
    }
    for name, value in config.items():
        if isinstance(value, dict):  # the towers' configs
            config[name] = {key: item for key, item in value.items() if key not in _UNHASHED_CONFIG_KEYS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def list_videos(source: str | os.PathLike) -> dict[str, str]:
    """
    The videos to extract features from, by id (the file name without its extension).

    Args:
        source (`str` or `os.PathLike`): One of
            - a folder: its video files (extensions `VIDEO_EXTENSIONS` of `locvtp_hf.data`), not its subfolders;
            - a glob pattern (`"videos/**/*.mp4"`; `**` reaches into subfolders);
            - a text file of video paths, one a line, relative to the text file's folder unless absolute (blank lines
              and lines starting with `#` are skipped). Listed files that are missing are reported when extracted.

    Returns:
        `dict[str, str]`: video id -> path, sorted by id.

    Raises:
        `FileNotFoundError`: `source` is neither a folder, a file nor a pattern that matches files.
        `ValueError`: no video found, or two videos with the same id (the message names both).
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        paths = sorted(
            str(path) for path in Path(source).iterdir() if path.suffix.lower().lstrip(".") in VIDEO_EXTENSIONS
        )
        where = f"folder {source} (extensions {', '.join(VIDEO_EXTENSIONS)})"
    elif os.path.isfile(source) and Path(source).suffix.lower().lstrip(".") in VIDEO_EXTENSIONS:
        paths, where = [source], source
    elif os.path.isfile(source):
        folder = Path(source).parent
        lines = [line.strip() for line in Path(source).read_text(encoding="utf-8").splitlines()]
        paths = [str(folder / line) for line in lines if line and not line.startswith("#")]
        where = f"list file {source}"
    elif glob.has_magic(source):
        paths = sorted(path for path in glob.glob(source, recursive=True) if os.path.isfile(path))
        where = f"pattern {source!r}"
    else:
        raise FileNotFoundError(f"{source} is neither a folder of videos, a video, a list of video paths nor a glob.")
    if not paths:
        raise ValueError(f"No video found in {where}.")
    videos: dict[str, str] = {}
    for path in paths:
        video_id = Path(path).stem
        if video_id in videos:
            raise ValueError(
                f"Two videos in {where} have the id {video_id!r} (the file name without its extension): "
                f"{videos[video_id]} and {path}. Rename one; features are stored by video id."
            )
        videos[video_id] = path
    return dict(sorted(videos.items()))


# ---------------------------------------------------------------------------------------------------------------------
# Files


def save_clip_features(path: str | os.PathLike, video: VideoClipFeatures, settings: Mapping[str, Any]) -> Path:
    """
    Write one video's features as a safetensors file (under a temporary name, then renamed).

    Args:
        path (`str` or `os.PathLike`): The file, e.g. `<folder>/<video_id>.safetensors`.
        video ([`VideoClipFeatures`]): The features.
        settings (`Mapping[str, Any]`): The extraction settings ([`FEATURES_INFO_FIELDS`]), stored as metadata.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    metadata = {**video.metadata(), **encode_settings(settings)}
    tensors = {"features": video.features.contiguous(), "clip_spans": video.clip_spans.contiguous()}
    save_file(tensors, str(partial), metadata=metadata)
    os.replace(partial, path)
    return path


def load_clip_features(path: str | os.PathLike) -> VideoClipFeatures:
    """Read a file written by [`save_clip_features`]."""
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata() or {}
        missing = {"features", "clip_spans"} - set(file.keys()) or {"video_id", "duration"} - set(metadata)
        if missing:
            raise ValueError(f"{path} is not a clip features file of extract_features.py: it lacks {sorted(missing)}.")
        return VideoClipFeatures(
            video_id=metadata["video_id"],
            features=file.get_tensor("features"),
            clip_spans=file.get_tensor("clip_spans"),
            duration=float(metadata["duration"]),
            video_fps=float(metadata["video_fps"]) if metadata.get("video_fps") else None,
        )


def require_h5py():
    """The `h5py` module, or an `ImportError` that says how to install it."""
    try:
        import h5py
    except ImportError as error:
        raise ImportError(
            'HDF5 features need h5py, an optional dependency: pip install "locvtp-hf[hdf5]" (or h5py).'
        ) from error
    return h5py


def write_hdf5(path: str | os.PathLike, videos: Iterator[VideoClipFeatures], settings: Mapping[str, Any]) -> int:
    """
    Write videos' features into a new HDF5 file: one top-level dataset `[num_clips, D]` per video id, the per-video
    metadata as its attributes and `settings` as the file's. Written under a temporary name, then renamed (an existing
    file at `path` is replaced).

    Returns:
        `int`: the number of videos written.
    """
    h5py = require_h5py()
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    with h5py.File(partial, "w") as file:
        file.attrs.update(encode_settings(settings))
        for video in videos:
            dataset = file.create_dataset(video.video_id, data=video.features.numpy())
            dataset.attrs.update(video.metadata())
            dataset.attrs["clip_spans"] = video.clip_spans.numpy()
            count += 1
    os.replace(partial, path)
    return count


def _hdf5_video(file, video_id: str) -> VideoClipFeatures:
    dataset = file[video_id]
    return VideoClipFeatures(
        video_id=video_id,
        features=torch.from_numpy(dataset[()]),
        clip_spans=torch.from_numpy(dataset.attrs["clip_spans"]),
        duration=float(dataset.attrs["duration"]),
        video_fps=float(dataset.attrs["video_fps"]) if dataset.attrs.get("video_fps") else None,
    )


def encode_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """Extraction settings as the strings safetensors metadata and HDF5 attributes hold (`None` as `""`)."""
    return {name: "" if value is None else str(value) for name, value in settings.items()}


def decode_settings(attributes: Mapping[str, str]) -> dict[str, Any]:
    """The [`FEATURES_INFO_FIELDS`] among `attributes`, back to their types."""
    return {
        name: None if attributes[name] == "" else kind(attributes[name])
        for name, kind in FEATURES_INFO_FIELDS.items()
        if name in attributes
    }


class ClipFeatureStore(Mapping):
    """
    Read-only `video_id -> VideoClipFeatures` over what `examples/extract_features.py` wrote: a folder of
    `<video_id>.safetensors` files or one HDF5 file. Features are read when asked for.

    Args:
        path (`str` or `os.PathLike`): The folder or the `.h5` / `.hdf5` file.

    Attributes:
        settings (`dict`): The extraction settings ([`FEATURES_INFO_FIELDS`]: the model's fingerprint and checkpoint
            name, feature dimension, clip layout), from `features_info.json` or the HDF5 file's attributes; empty
            when neither records them.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.suffix.lower() in HDF5_SUFFIXES:
            if not self.path.is_file():
                raise FileNotFoundError(f"No HDF5 features file at {self.path}.")
            self._file = require_h5py().File(self.path, "r")
            self._ids = sorted(self._file.keys())
            self.settings = decode_settings(self._file.attrs)
        else:
            if not self.path.is_dir():
                raise FileNotFoundError(
                    f"No features folder at {self.path} (a folder of <video_id>.safetensors, or an .h5 file)."
                )
            self._file = None
            self._ids = sorted(path.stem for path in self.path.glob("*.safetensors"))
            info = self.path / FEATURES_INFO_FILE
            self.settings = json.loads(info.read_text()) if info.is_file() else {}
        if not self._ids:
            raise ValueError(f"{self.path} holds no video features.")
        self._id_set = set(self._ids)

    def __getitem__(self, video_id: str) -> VideoClipFeatures:
        if video_id not in self._id_set:
            raise KeyError(video_id)
        if self._file is not None:
            return _hdf5_video(self._file, video_id)
        return load_clip_features(self.path / f"{video_id}.safetensors")

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def find(self, video_id: str) -> str | None:
        """The stored id of an annotation's `video_id`: itself, or without a file extension (TACoS' `s13-d21.avi`,
        DiDeMo's `..._f2d6.mov` are stored as `s13-d21`, `..._f2d6`); `None` when neither is stored."""
        for candidate in (video_id, Path(video_id).stem):
            if candidate in self._id_set:
                return candidate
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
