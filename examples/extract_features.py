"""Extract LocVTP clip features of whole videos for temporal grounding, one file per video or one HDF5 file.

    python examples/extract_features.py --videos videos/ --model_name_or_path outputs/pretrain --output features/
    python examples/extract_features.py --videos "videos/**/*.mp4" --model_name_or_path CKPT --output features.h5
    python examples/extract_features.py --videos video_list.txt --model_name_or_path CKPT --output features/
    python examples/extract_features.py --help

`--videos` is a folder (its .mp4 / .webm / .mkv / .avi / .mov files), a glob pattern, or a text file of video paths
(one a line, relative to the text file). A video's id is its file name without the extension. Each video is cut
into clips exactly as `LocVTPProcessor(..., task="grounding")` cuts it (the checkpoint processor's
`grounding_clip_seconds` and `grounding_max_clips`, which the flags of the same names override) and encoded with
`LocVTPForTemporalGrounding.get_clip_features`, so the features are those the grounding head consumes.

Output (see docs/feature_extraction.md):
- a folder (default): `<output>/<video_id>.safetensors` with tensors `features` [num_clips, D] and `clip_spans`
  [num_clips, 2] (seconds), and metadata (duration, video fps, clip stride, model hash and checkpoint name, clip
  layout);
- a path ending in `.h5` / `.hdf5`: one HDF5 file, a dataset `[num_clips, D]` per video id (2D-TAN's layout). Needs
  h5py (`pip install "locvtp-hf[hdf5]"`).

Resuming: run the same command again. Videos already done are skipped; every file is written under a temporary name
and renamed when complete, so an interrupted run loses at most the videos in flight. The HDF5 variant first writes
per-video files into `<output>.parts/`, then merges them with the videos already in `<output>` into a new file that
replaces it, and removes the parts: an interruption at any point leaves the previous HDF5 file intact and the parts to
be merged by the next run. Features of different models or clip layouts are never mixed in one output (checked): the
output records the model by a hash of its encoder's weights and config (`model_sha256`), so the same checkpoint is
recognised under any path, and a checkpoint re-trained into the same folder is refused. The checkpoint itself is
recorded by its Hub id or its folder's name only, never by a path of this machine.

Unreadable videos (and videos shorter than one clip) are reported at the end and listed in
`<output>/failed_videos.json` (`<output>.failed_videos.json` for HDF5); the next run tries them again.

Arguments: the `ExtractionArguments` dataclass below, parsed with `HfArgumentParser` by
`locvtp_hf.training.parse_arguments` (so `--config run.yaml` works too).
"""

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from locvtp_hf import LocVTPForTemporalGrounding, LocVTPProcessor
from locvtp_hf.encoding import FailedVideo, encode_clip_features
from locvtp_hf.grounding_features import (
    FEATURES_INFO_FILE,
    HDF5_SUFFIXES,
    ClipFeatureStore,
    list_videos,
    load_clip_features,
    model_fingerprint,
    save_clip_features,
    require_h5py,
    write_hdf5,
)
from locvtp_hf.training import parse_arguments


logger = logging.getLogger(__name__)


@dataclass
class ExtractionArguments:
    videos: str = field(
        metadata={"help": "A folder of videos, a glob pattern ('videos/**/*.mp4') or a text file of video paths."}
    )
    model_name_or_path: str = field(
        metadata={"help": "A LocVTP checkpoint (pre-training or grounding) with its processor, folder or Hub id."}
    )
    output: str = field(
        default="outputs/features",
        metadata={"help": "A folder for <video_id>.safetensors files, or a .h5 / .hdf5 file (needs h5py)."},
    )
    batch_size: int = field(default=4, metadata={"help": "Videos decoded and encoded together."})
    clip_batch_size: int | None = field(
        default=None, metadata={"help": "Clips encoded at once. Default: the model's grounding_clip_chunk_size."}
    )
    num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes that decode videos."})
    grounding_clip_seconds: float | None = field(
        default=None, metadata={"help": "Shortest clip in seconds. Default: the checkpoint processor's."}
    )
    grounding_max_clips: int | None = field(
        default=None,
        metadata={"help": "Most clips per video (longer videos get longer clips). Default: the processor's."},
    )
    device: str | None = field(default=None, metadata={"help": "'cpu', 'cuda', 'cuda:1', ... Default: a GPU if any."})
    dtype: str = field(default="float32", metadata={"help": "Model dtype: float32, float16 or bfloat16 (GPU)."})


def check_arguments(args: ExtractionArguments) -> None:
    for name in ("batch_size", "clip_batch_size", "grounding_max_clips"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be at least 1, got {value}.")
    if args.num_workers < 0:
        raise ValueError(f"--num_workers must be 0 or more, got {args.num_workers}.")
    if args.grounding_clip_seconds is not None and not args.grounding_clip_seconds > 0:
        raise ValueError(f"--grounding_clip_seconds must be positive, got {args.grounding_clip_seconds}.")
    if args.dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"--dtype must be float32, float16 or bfloat16, got {args.dtype!r}.")


def load_feature_model(model_name_or_path: str) -> LocVTPForTemporalGrounding:
    """The checkpoint as a `LocVTPForTemporalGrounding`, whose `get_clip_features` gives the grounding features."""
    # only the encoder is used here: a pre-training checkpoint's missing grounding head is no news to report
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        return LocVTPForTemporalGrounding.from_pretrained(model_name_or_path)
    finally:
        transformers.logging.set_verbosity(verbosity)


def checkpoint_name(model_name_or_path: str) -> str:
    """The checkpoint as the features record it: a Hub id as it is, a local folder by its name only (features are
    shared, this machine's paths are not). The model itself is identified by its fingerprint."""
    path = Path(model_name_or_path)
    return path.resolve().name if path.is_dir() else model_name_or_path


def check_settings(recorded: dict, settings: dict, where: Path, model_name_or_path: str) -> None:
    """Refuse to add features to an output written by another model (whatever its path) or with another clip
    layout."""
    if recorded.get("model_sha256") != settings["model_sha256"]:
        if recorded.get("model_sha256"):
            reason = (
                f"was written by a different model (checkpoint {recorded.get('checkpoint')!r}, model_sha256 "
                f"{recorded['model_sha256'][:12]}...) than {model_name_or_path} (model_sha256 "
                f"{settings['model_sha256'][:12]}...: the hash of the encoder's weights and config, whatever its path)"
            )
        else:
            reason = (
                "does not record the hash of the model that wrote it (model_sha256; an older extract_features.py), so "
                f"it cannot be checked to be {model_name_or_path}"
            )
        raise ValueError(
            f"{where} {reason}. Adding to it could mix the features of two models. Choose another --output, or delete "
            f"{where} to extract every video again with this model."
        )
    changed = {
        name: (recorded.get(name), value)
        for name, value in settings.items()
        if name not in ("checkpoint", "model_sha256") and recorded.get(name) != value
    }
    if changed:
        raise ValueError(
            f"{where} holds features extracted with other settings; adding to it would mix them. Changed: "
            + ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
            + ". Choose another --output (or delete the old one)."
        )


def prepare_parts_folder(folder: Path, settings: dict, model_name_or_path: str) -> set[str]:
    """Create (or check) a folder of per-video files; returns the ids of the videos already in it. Files an
    interrupted run left half-written are removed."""
    for partial in folder.glob(".*.partial"):
        partial.unlink()
    info = folder / FEATURES_INFO_FILE
    if info.is_file():
        check_settings(json.loads(info.read_text()), settings, folder, model_name_or_path)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        info.write_text(json.dumps(settings, indent=2) + "\n")
    return {path.stem for path in folder.glob("*.safetensors")}


def merge_into_hdf5(output: Path, parts: Path, settings: dict) -> int:
    """A new HDF5 file with the videos of the existing `output` (if any) and the per-video files in `parts`, written
    beside `output` and renamed over it; `parts` is removed afterwards. Returns the number of videos in the file."""
    staged = {path.stem: path for path in sorted(parts.glob("*.safetensors"))}
    previous = ClipFeatureStore(output) if output.exists() else None

    def videos():
        if previous is not None:
            yield from (previous[video_id] for video_id in previous if video_id not in staged)
        yield from (load_clip_features(path) for path in staged.values())

    try:
        count = write_hdf5(output, videos(), settings)
    finally:
        if previous is not None:
            previous.close()
    shutil.rmtree(parts)
    return count


def main():
    (args,) = parse_arguments((ExtractionArguments,), description=__doc__)
    check_arguments(args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)

    videos = list_videos(args.videos)
    output = Path(args.output)
    hdf5 = output.suffix.lower() in HDF5_SUFFIXES
    if hdf5:
        require_h5py()

    model = load_feature_model(args.model_name_or_path)
    processor = LocVTPProcessor.from_pretrained(args.model_name_or_path)
    for name in ("grounding_clip_seconds", "grounding_max_clips"):
        if getattr(args, name) is not None:
            setattr(processor.video_processor, name, getattr(args, name))
    video_processor = processor.video_processor
    settings = {
        "checkpoint": checkpoint_name(args.model_name_or_path),
        "model_sha256": model_fingerprint(model),  # before the cast to --dtype: the checkpoint's weights
        "feature_dim": model.config.projection_dim,
        "grounding_clip_seconds": float(video_processor.grounding_clip_seconds),
        "grounding_max_clips": video_processor.grounding_max_clips,
        "frames_per_clip": video_processor.frames_per_clip,
    }
    if args.device is not None:
        device = torch.device(args.device)
    else:
        device = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else torch.device("cpu")
    model.to(device=device, dtype=getattr(torch, args.dtype))

    # ---- what is left to do -----------------------------------------------------------------------------------------
    parts = output.with_name(output.name + ".parts") if hdf5 else output
    done = set()
    if hdf5:
        output.with_name(f".{output.name}.partial").unlink(missing_ok=True)  # left by an interrupted merge
    if hdf5 and output.exists():
        previous = ClipFeatureStore(output)
        check_settings(previous.settings, settings, output, args.model_name_or_path)
        done = set(previous)
        previous.close()
    done |= prepare_parts_folder(parts, settings, args.model_name_or_path)
    todo = [(video_id, path) for video_id, path in videos.items() if video_id not in done]
    logger.info(
        f"{len(videos)} videos: {len(videos) - len(todo)} already done, {len(todo)} to extract on {device} with "
        f"{args.model_name_or_path} (clips of at least {settings['grounding_clip_seconds']} s, at most "
        f"{settings['grounding_max_clips']} per video)"
    )

    # ---- extract ----------------------------------------------------------------------------------------------------
    failures, extracted = [], 0
    results = encode_clip_features(
        model, processor, dict(todo), batch_size=args.batch_size, num_workers=args.num_workers,
        clip_batch_size=args.clip_batch_size,
    )
    with logging_redirect_tqdm():
        for result in tqdm(results, total=len(todo), desc="extracting", unit="video"):
            if isinstance(result, FailedVideo):
                logger.warning(f"Skipped {result.error}")
                failures.append(result)
                continue
            save_clip_features(parts / f"{result.video_id}.safetensors", result, settings)
            extracted += 1

    if hdf5 and any(parts.glob("*.safetensors")):
        count = merge_into_hdf5(output, parts, settings)
        logger.info(f"{output}: {count} videos")
    elif hdf5:
        shutil.rmtree(parts)

    # ---- report -----------------------------------------------------------------------------------------------------
    failures_file = Path(f"{output}.failed_videos.json") if hdf5 else output / "failed_videos.json"
    if failures:
        failures_file.write_text(
            json.dumps([{"video_id": f.video_id, "video": f.source, "error": f.error} for f in failures], indent=2)
            + "\n"
        )
    else:
        failures_file.unlink(missing_ok=True)
    print(
        f"\n{extracted} extracted, {len(videos) - len(todo)} already done, {len(failures)} failed "
        f"(of {len(videos)} videos) -> {output}"
    )
    if failures:
        print(f"Failed videos (listed in {failures_file}; the next run tries them again):")
        for failure in failures:
            print(f"  {failure.video_id}: {failure.error}")


if __name__ == "__main__":
    main()
