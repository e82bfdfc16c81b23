"""
Batch encoding of collections: videos and texts into the embeddings the evaluation, the video index, feature
extraction and grounding fine-tuning work on. Videos are decoded by DataLoader workers; nothing here needs a
`datasets.Dataset`.

- [`encode_videos`]: whole videos, clips centred in `num_clips` equal segments (the retrieval layout): the video
  embedding `z` and the clip embeddings of each video.
- [`encode_texts`]: sentence embeddings (and optionally word embeddings) of texts.
- [`encode_clip_features`]: the clip features of whole videos in the grounding layout (clips of at least
  `grounding_clip_seconds`, as `LocVTPProcessor(..., task="grounding")` cuts them), one [`VideoClipFeatures`] per
  video, as they are computed.
"""

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .modeling_locvtp import LocVTPModel
from .processing_locvtp import LocVTPProcessor
from .video_io import VideoDecodingError, probe_video


# What "this video cannot be read" means (a missing file, a `VideoDecodingError`, a video the processor rejects);
# anything else (a bug, a bad model) propagates.
UNREADABLE_VIDEO_ERRORS = (OSError, ValueError)


@dataclass
class UnreadableVideo:
    """A video of a collection that could not be read: its `index` in the collection, the `video` (its path or id,
    as a string) and the error, in words (`reason`)."""

    index: int
    video: str
    reason: str


class _WholeVideosDataset(torch.utils.data.Dataset):
    """One video per item, decoded and cut into centred clips; an unreadable video gives its error instead."""

    def __init__(self, videos: Sequence, processor: LocVTPProcessor, load_video, video_fps, num_clips):
        self.videos, self.processor, self.load_video, self.video_fps = videos, processor, load_video, video_fps
        self.overrides = {"num_clips": num_clips} if num_clips is not None else {}

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        try:
            decoded = self.load_video(video) if self.load_video is not None else video
            inputs = self.processor.video_processor(
                [decoded], video_fps=self.video_fps, return_tensors="pt", **self.overrides
            )
        except UNREADABLE_VIDEO_ERRORS as error:
            return {"index": index, "error": error}
        return {"pixel_values_videos": inputs["pixel_values_videos"], "clip_spans": inputs["clip_spans"]}


@torch.no_grad()
def encode_videos(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    videos: Sequence,
    load_video: Callable | None = None,
    video_fps: float | None = None,
    num_clips: int | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    progress_bar: bool = False,
    skip_unreadable: bool = False,
):
    """
    Encodes whole videos, with clips centred in `num_clips` (default: the processor's) equal segments, `batch_size`
    videos per forward pass. The videos are decoded by `num_workers` DataLoader worker processes (0: in this
    process); the embeddings do not depend on it.

    Args:
        model ([`LocVTPModel`]): Or any model with `get_video_features` like it; run as it is (put it in eval mode).
        load_video (`Callable`, *optional*): Turns an entry of `videos` into what the video processor takes (e.g.
            `SyntheticWorld.render`); by default the entries are given to it as they are (paths or frame arrays).
        progress_bar (`bool`, *optional*, defaults to `False`): Show a tqdm progress bar over the videos.
        skip_unreadable (`bool`, *optional*, defaults to `False`): Leave out the videos that cannot be read (a
            missing file, a [`~video_io.VideoDecodingError`], a video the processor rejects) and return them as a
            fourth value, a list of [`UnreadableVideo`]; by default the first such video raises its error, naming
            its index.

    Returns:
        `(video_embeds [N, D], clip_embeds [N, T, D], clip_spans [N, T, 2])` on the CPU, and with `skip_unreadable`
        the list of [`UnreadableVideo`]; the tensors then hold the readable videos only, in their order.

    Raises:
        [`~video_io.VideoDecodingError`]: with `skip_unreadable`, when none of the videos can be read.
    """
    dataset = _WholeVideosDataset(videos, processor, load_video, video_fps, num_clips)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    video_embeds, clip_embeds, clip_spans, unreadable = [], [], [], []
    with tqdm(total=len(videos), desc="encoding videos", unit="video", disable=not progress_bar) as progress:
        for items in loader:
            readable = []
            for item in items:
                if "error" not in item:
                    readable.append(item)
                    continue
                error = item["error"]
                # the processor names the video by its place in its one-video call: name its place in `videos`
                reason = str(error).removeprefix("videos[0]: ")
                if not skip_unreadable:
                    raise type(error)(f"videos[{item['index']}]: {reason}") from error
                index = item["index"]
                video = os.fspath(videos[index]) if isinstance(videos[index], str | os.PathLike) else f"videos[{index}]"
                unreadable.append(UnreadableVideo(index, video, f"{type(error).__name__}: {reason}"))
            if readable:
                pixels = torch.cat([item["pixel_values_videos"] for item in readable])
                out = model.get_video_features(pixels.to(model.device, model.dtype))
                video_embeds.append(out.pooler_output.float().cpu())
                clip_embeds.append(out.clip_embeds.float().cpu())
                clip_spans.extend(item["clip_spans"] for item in readable)
            progress.update(len(items))
    if unreadable and len(unreadable) == len(videos):
        raise VideoDecodingError(
            f"None of the {len(videos)} videos could be read, e.g. {unreadable[0].video}: {unreadable[0].reason}"
        )
    encoded = (torch.cat(video_embeds), torch.cat(clip_embeds), torch.cat(clip_spans))
    return (*encoded, unreadable) if skip_unreadable else encoded


@torch.no_grad()
def encode_texts(
    model: LocVTPModel,
    processor: LocVTPProcessor,
    texts: Sequence[str],
    batch_size: int = 128,
    return_words: bool = False,
):
    """
    `[N, D]` sentence embeddings on the CPU; with `return_words`, `(sentence_embeds [N, D], word_embeds [N, L, D],
    word_mask [N, L])`, every batch padded to the longest text `L`.
    """
    embeds, words, masks = [], [], []
    for start in range(0, len(texts), batch_size):
        inputs = processor(text=list(texts[start : start + batch_size]), return_tensors="pt").to(model.device)
        out = model.get_text_features(**inputs)
        embeds.append(out.pooler_output.float().cpu())
        words.append(out.word_embeds.float().cpu())
        masks.append(out.word_mask.cpu())
    if not return_words:
        return torch.cat(embeds)
    length = max(mask.shape[1] for mask in masks)
    words = [F.pad(word, (0, 0, 0, length - word.shape[1])) for word in words]
    masks = [F.pad(mask, (0, length - mask.shape[1])) for mask in masks]
    return torch.cat(embeds), torch.cat(words), torch.cat(masks)


@dataclass
class VideoClipFeatures:
    """
    The clip features of one whole video.

    Attributes:
        video_id (`str`): The video's id (its file name without the extension).
        features (`torch.FloatTensor` of shape `[num_clips, D]`): One feature per clip, in temporal order.
        clip_spans (`torch.FloatTensor` of shape `[num_clips, 2]`): Each clip's `(start, end)` in seconds.
        duration (`float`): The video's duration in seconds; the clips tile `[0, duration]`.
        video_fps (`float`, *optional*): The video's frame rate.
    """

    video_id: str
    features: torch.Tensor
    clip_spans: torch.Tensor
    duration: float
    video_fps: float | None = None

    def metadata(self) -> dict[str, str]:
        """The per-video metadata written beside the features (as strings, the safetensors metadata type)."""
        num_clips = len(self.features)
        return {
            "video_id": self.video_id,
            "duration": repr(float(self.duration)),
            "video_fps": "" if self.video_fps is None else repr(float(self.video_fps)),
            "clip_seconds": repr(float(self.duration) / num_clips),
            "num_clips": str(num_clips),
        }


@dataclass
class FailedVideo:
    """A video whose features could not be extracted: `video_id`, its `source` (path) and the `error`."""

    video_id: str
    source: str
    error: str


class WholeVideoClipsDataset(torch.utils.data.Dataset):
    """
    Whole videos cut into clips by the processor's grounding route, one video per item, for DataLoader workers.

    Args:
        videos (`Sequence[tuple[str, Any]]`): `(video_id, video)` pairs: a video is a file path, or anything
            `load_video` turns into a video the processor takes.
        processor ([`LocVTPProcessor`]): Cuts each video into clips (`task="grounding"`).
        load_video (`Callable`, *optional*): Maps a pair's `video` to a decoded video (e.g. the synthetic world's
            `render`); by default the processor decodes the file.
        video_fps (`float`, *optional*): Frame rate of the videos `load_video` returns.

    Items are dicts with `video_id`, `source`, and either `pixel_values_videos` (`[num_clips, F, C, H, W]`),
    `clip_spans` (`[num_clips, 2]`), `duration` and `video_fps`, or `error` (a video that is missing, cannot be
    opened or decoded, e.g. a truncated file, or is shorter than one clip: `"<video>: <reason>"`).
    """

    def __init__(
        self,
        videos: Sequence[tuple[str, Any]],
        processor,
        load_video: Callable | None = None,
        video_fps: float | None = None,
    ):
        self.videos = list(videos)
        self.processor = processor
        self.load_video = load_video
        self.video_fps = video_fps

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        video_id, video = self.videos[index]
        item = {"video_id": video_id, "source": str(video), "error": None}
        try:
            if self.load_video is not None:
                decoded, video_fps = self.load_video(video), self.video_fps
            else:
                decoded, video_fps = video, probe_video(video).fps
            inputs = self.processor(videos=[decoded], task="grounding", video_fps=video_fps, return_tensors="pt")
        except UNREADABLE_VIDEO_ERRORS as error:
            item["error"] = f"{video}: {error}"
            return item
        item.update(
            pixel_values_videos=inputs["pixel_values_videos"][0],
            clip_spans=inputs["clip_spans"][0],
            duration=float(inputs["video_durations"][0]),
            video_fps=video_fps,
        )
        return item


def encode_clip_features(
    model,
    processor,
    videos: Mapping[str, Any],
    load_video: Callable | None = None,
    video_fps: float | None = None,
    batch_size: int = 4,
    num_workers: int = 0,
    clip_batch_size: int | None = None,
    progress_bar: bool = False,
) -> Iterator[VideoClipFeatures | FailedVideo]:
    """
    The clip features of every video in the grounding layout, `batch_size` videos per forward pass, decoded by
    `num_workers` DataLoader workers, on the model's device. A generator: each video's features come as soon as its
    batch is encoded, so a caller can write them out (`examples/extract_features.py`) or keep them in memory (grounding
    fine-tuning on cached features) without holding any other copy.

    Args:
        model ([`LocVTPForTemporalGrounding`]): Its [`~LocVTPForTemporalGrounding.get_clip_features`] makes the
            features; it is put in eval mode.
        processor ([`LocVTPProcessor`]): Cuts each whole video into clips (`task="grounding"`).
        videos (`Mapping[str, Any]`): `video_id -> video` (a file path, or what `load_video` takes).
        load_video (`Callable`, *optional*), video_fps (`float`, *optional*): See [`WholeVideoClipsDataset`].
        batch_size (`int`, *optional*, defaults to 4): Videos decoded and encoded together.
        num_workers (`int`, *optional*, defaults to 0): DataLoader worker processes that decode videos.
        clip_batch_size (`int`, *optional*): Clips encoded at once; defaults to `config.grounding_clip_chunk_size`.
        progress_bar (`bool`, *optional*, defaults to `False`): Show a tqdm progress bar over the videos.

    Yields:
        [`VideoClipFeatures`] (features `[num_clips, D]` on the CPU, float32) or [`FailedVideo`], in the order of
        `videos`.
    """
    dataset = WholeVideoClipsDataset(list(videos.items()), processor, load_video=load_video, video_fps=video_fps)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    parameter = next(model.parameters())
    model.eval()
    with tqdm(total=len(dataset), desc="clip features", unit="video", disable=not progress_bar) as progress:
        for items in loader:
            readable = [item for item in items if item["error"] is None]
            features = []
            if readable:
                # all clips of the batch as one sequence: each clip is encoded on its own, so this equals
                # per-video calls
                clips = torch.cat([item["pixel_values_videos"] for item in readable])[None]
                clips = clips.to(parameter.device, parameter.dtype)
                with torch.no_grad():
                    encoded = model.get_clip_features(clips, chunk_size=clip_batch_size)
                features = encoded[0].float().cpu().split([len(item["clip_spans"]) for item in readable])
            readable_features = iter(features)
            for item in items:
                if item["error"] is not None:
                    yield FailedVideo(item["video_id"], item["source"], item["error"])
                else:
                    yield VideoClipFeatures(
                        video_id=item["video_id"],
                        features=next(readable_features).contiguous(),
                        clip_spans=item["clip_spans"].float(),
                        duration=item["duration"],
                        video_fps=item["video_fps"],
                    )
                progress.update()
