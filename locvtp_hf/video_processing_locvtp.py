# Copyright 2025 The LocVTP-HF authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Video processor for LocVTP: samples `num_clips` clips of `frames_per_clip` frames from a span of each video."""

import math
import numbers
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from huggingface_hub.dataclasses import validate_typed_dict
from PIL import Image
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ChannelDimension, PILImageResampling
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils import TensorType, logging
from transformers.video_processing_utils import BaseVideoProcessor

from .video_io import (
    SUPPORTED_BACKENDS,
    TIME_TOLERANCE,
    EncodedVideo,
    VideoDecodingError,
    probe_video,
    read_frames_at,
)


logger = logging.get_logger(__name__)

FRAME_SAMPLING_MODES = ("uniform", "consecutive")

# `num_clips` has no upper bound, but above this many bytes of pixel values per video (float32 `[T, F, C, H, W]`) the
# processor warns with the size: 2000 clips of 4 frames at 224 px take 4.5 GiB.
LARGE_VIDEO_OUTPUT_BYTES = 2**30

# Arguments of the generic video processors that select frames; LocVTP selects frames from `spans` instead.
_UNSUPPORTED_FRAME_SELECTION_KWARGS = ("do_sample_frames", "num_frames", "fps", "video_metadata", "return_metadata")
_SAMPLING_KWARGS = ("num_clips", "frames_per_clip", "frame_sampling", "default_fps", "video_backend")
_GROUNDING_KWARGS = ("grounding_clip_seconds", "grounding_max_clips")


class LocVTPVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    num_clips (`int`, *optional*, defaults to 8):
        Number of clips `T` taken from each video span; the span is split into `T` equal segments, one clip each.
        There is no upper bound, but a warning gives the size when one video's pixel values would exceed 1 GiB.
    frames_per_clip (`int`, *optional*, defaults to 4):
        Number of frames `F` per clip.
    frame_sampling (`str`, *optional*, defaults to `"uniform"`):
        `"uniform"`: the `F` frames are spread evenly over the segment. `"consecutive"`: `F` consecutive frames at the
        video's native rate.
    default_fps (`float`, *optional*, defaults to 30.0):
        Frame rate assumed for decoded arrays and frame lists when the caller passes no `video_fps`.
    video_backend (`str`, *optional*, defaults to `"pyav"`):
        Decoder for video files: `"pyav"` or `"torchcodec"`.
    grounding_clip_seconds (`float`, *optional*, defaults to 1.0):
        For temporal grounding ([`~LocVTPVideoProcessor.preprocess_grounding`]): the whole video is cut into
        `floor(duration / grounding_clip_seconds)` equal clips, each at least this long.
    grounding_max_clips (`int`, *optional*, defaults to 256):
        At most this many clips per video for grounding (longer videos get longer clips), which bounds the memory of
        the decoded frames; `None` for no limit.
    resize_while_decoding (`bool`, *optional*, defaults to `False`):
        When a video file larger than `size["shortest_edge"]` is decoded with PyAV, FFmpeg shrinks each frame to that
        shortest edge (area averaging, as `locvtp_hf.video_shards.write_video_shards` stores frames) as it converts
        it to RGB, so full-size frames are never converted, copied or resized, and the usual resize has nothing left
        to do: 10-30 % more clips per second on the real test videos (`benchmarks/data_path.py`). The pixel values
        differ from those of `False` (decode at full size, then resize with `resample`), by about 0.03 on average
        after normalisation at 224 px and 0.12 at 32 px, so a model should be used with the setting it was trained
        with; `False` keeps the output of processors saved before this option.
    """

    num_clips: int
    frames_per_clip: int
    frame_sampling: Literal["uniform", "consecutive"]
    default_fps: int | float
    video_backend: Literal["pyav", "torchcodec"]
    grounding_clip_seconds: int | float
    grounding_max_clips: int | None
    resize_while_decoding: bool


def sample_clip_times(
    start: float,
    end: float,
    fps: float,
    num_clips: int,
    frames_per_clip: int,
    frame_sampling: str = "uniform",
    training: bool = False,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    Choose the times of the frames of each clip in a span, following LocVTP: the span is split into `num_clips` equal
    segments and one clip of `frames_per_clip` frames is taken from each.

    - `"uniform"`: the segment is split into `frames_per_clip` equal sub-intervals, one frame per sub-interval, at
      its centre (evaluation) or at a uniformly random time inside it (training, as in TSN).
    - `"consecutive"`: `frames_per_clip` consecutive frames at the native rate `fps`, centred in the segment
      (evaluation) or starting at a uniformly random time such that they fit in the segment (training). A segment
      shorter than `frames_per_clip` frames gets its frames spread evenly over it, so frames repeat.

    A clip's span runs from the start of its first frame to the end of its last frame, on the nominal frame grid
    `k / fps`, clipped to `[start, end]`.

    Args:
        start (`float`), end (`float`): The span in seconds, `start < end`.
        fps (`float`): Native frame rate of the video.
        num_clips (`int`): Number of clips `T`.
        frames_per_clip (`int`): Number of frames `F` per clip.
        frame_sampling (`str`, *optional*, defaults to `"uniform"`): `"uniform"` or `"consecutive"`.
        training (`bool`, *optional*, defaults to `False`): Random offsets (training) or centred ones (evaluation).
        rng (`np.random.Generator`, *optional*): Source of the random offsets in training.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: the frame times in seconds, float64 of shape `[T, F]`, increasing within
        each clip, and the clip spans in seconds, float64 of shape `[T, 2]`.
    """
    if frame_sampling not in FRAME_SAMPLING_MODES:
        raise ValueError(f"`frame_sampling` must be one of {FRAME_SAMPLING_MODES}, got {frame_sampling!r}.")
    if training and rng is None:
        rng = np.random.default_rng()
    segment = (end - start) / num_clips
    segment_starts = start + segment * np.arange(num_clips)
    frame_positions = np.arange(frames_per_clip)

    if frame_sampling == "uniform":
        step = segment / frames_per_clip
        offsets = rng.random((num_clips, frames_per_clip)) if training else np.full((num_clips, frames_per_clip), 0.5)
        times = segment_starts[:, None] + (frame_positions + offsets) * step
    else:
        step = min(1.0 / fps, segment / frames_per_clip)
        slack = segment - frames_per_clip * step
        shifts = rng.random(num_clips) * slack if training else np.full(num_clips, slack / 2)
        times = (segment_starts + shifts)[:, None] + (frame_positions + 0.5) * step

    frame_starts = np.floor((times + TIME_TOLERANCE) * fps) / fps
    clip_spans = np.stack(
        [np.maximum(frame_starts[:, 0], start), np.minimum(frame_starts[:, -1] + 1.0 / fps, end)], axis=-1
    )
    return times, clip_spans


def make_video_list(videos) -> list:
    """
    Wrap a single video (path, [`EncodedVideo`], `[N, H, W, C]` array or tensor, list of frames) into a list of videos.
    """
    if isinstance(videos, (str, os.PathLike, EncodedVideo)):
        return [videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        # A 5-D array is a batch of equally sized videos; anything else is one video (and checked later).
        return list(videos) if videos.ndim == 5 else [videos]
    if isinstance(videos, (list, tuple)):
        if len(videos) == 0:
            raise ValueError("`videos` is empty: pass a video or a non-empty list of videos.")
        first = videos[0]
        if isinstance(first, Image.Image) or (isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 3):
            return [videos]
        return list(videos)
    raise TypeError(
        "`videos` must be a file path, an `EncodedVideo`, a `[num_frames, height, width, 3]` uint8 array or tensor, "
        f"a list of frames, or a list of those; got {type(videos).__name__}."
    )


def _count_whole_video_clips(name: str, duration: float, clip_seconds: float, max_clips: int | None) -> int:
    """Clips of at least `clip_seconds` (at most `max_clips`) that a video of `duration` seconds is cut into."""
    num_clips = math.floor(duration / clip_seconds + TIME_TOLERANCE)
    if num_clips < 1:
        raise ValueError(
            f"{name} lasts {duration:.3f} s, shorter than one grounding clip (grounding_clip_seconds={clip_seconds}): "
            "lower grounding_clip_seconds to ground queries in it."
        )
    return num_clips if max_clips is None else min(num_clips, max_clips)


def _warn_if_large_output(num_clips: int, frames_per_clip: int, image_kwargs: dict) -> None:
    """Warn when one video's float32 pixel values would exceed `LARGE_VIDEO_OUTPUT_BYTES`, giving their size."""
    crop_size, size = image_kwargs["crop_size"], image_kwargs["size"]
    if image_kwargs["do_center_crop"]:
        height, width = crop_size.height, crop_size.width
    elif image_kwargs["do_resize"] and size.height and size.width:
        height, width = size.height, size.width
    else:
        return  # the output size depends on the video's own size, unknown before decoding
    num_bytes = num_clips * frames_per_clip * 3 * height * width * 4
    if num_bytes > LARGE_VIDEO_OUTPUT_BYTES:
        logger.warning_once(
            f"num_clips={num_clips} clips of frames_per_clip={frames_per_clip} frames at {height}x{width} px take "
            f"{num_bytes / 2**30:.1f} GiB of float32 pixel values per video, plus the decoded frames at the video's "
            "own size: lower num_clips, or cut a long video into several spans."
        )


class LocVTPVideoProcessor(BaseVideoProcessor):
    r"""
    Video processor for LocVTP. For each video it takes a span `[start, end]` (in seconds; the whole video by
    default), splits it into `num_clips` (`T`) equal segments, samples one clip of `frames_per_clip` (`F`) frames per
    segment (see [`sample_clip_times`]), decodes only those frames, and resizes (shortest edge), center-crops,
    rescales and normalizes them with the torchvision backend of [`BaseVideoProcessor`].

    Videos may be:

    - a file path (`str` or `os.PathLike`; mp4, mkv, webm, ...), decoded with `video_backend`;
    - a decoded video, `np.ndarray` or `torch.Tensor` of shape `[N, H, W, 3]` (channels last, RGB) and dtype
      `uint8` (values 0-255; float arrays are rejected rather than guessed at: convert with
      `(x * 255).round().astype(np.uint8)`);
    - a list of frames: PIL images or `uint8` arrays of shape `[H, W, 3]`, all the same size.

    Decoded arrays and frame lists have no timing: their frame rate is `video_fps` if given, else `default_fps`, and
    frame `k` is shown during `[k / fps, (k + 1) / fps)`.

    A video or span with fewer than `T * F` frames works: the frame shown at each sampled time is used, so frames
    repeat.

    Normalization uses the ImageNet mean and std (`IMAGENET_DEFAULT_MEAN` / `IMAGENET_DEFAULT_STD`).

    Args:
        num_clips (`int`, *optional*, defaults to 8): Number of clips `T` per video.
        frames_per_clip (`int`, *optional*, defaults to 4): Number of frames `F` per clip.
        frame_sampling (`str`, *optional*, defaults to `"uniform"`): `"uniform"` or `"consecutive"`.
        default_fps (`float`, *optional*, defaults to 30.0): Frame rate of decoded arrays given without `video_fps`.
        video_backend (`str`, *optional*, defaults to `"pyav"`): `"pyav"` or `"torchcodec"`.
        grounding_clip_seconds (`float`, *optional*, defaults to 1.0): Shortest clip when a whole video is cut into
            clips for temporal grounding.
        grounding_max_clips (`int`, *optional*, defaults to 256): Most clips per video for temporal grounding (2D-TAN
            samples 256 clips per video); `None` for no limit.
        resize_while_decoding (`bool`, *optional*, defaults to `False`): Let FFmpeg shrink the frames of video files
            to `size["shortest_edge"]` while decoding them (PyAV backend only); see
            [`LocVTPVideoProcessorKwargs`].
        kwargs: The image options of [`BaseVideoProcessor`] (`size`, `crop_size`, `do_resize`, `do_center_crop`,
            `do_rescale`, `do_normalize`, `image_mean`, `image_std`, `resample`, ...).
    """

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    num_clips = 8
    frames_per_clip = 4
    frame_sampling = "uniform"
    default_fps = 30.0
    video_backend = "pyav"
    grounding_clip_seconds = 1.0
    grounding_max_clips = 256
    resize_while_decoding = False
    valid_kwargs = LocVTPVideoProcessorKwargs
    model_input_names = ["pixel_values_videos"]

    def __init__(self, **kwargs: Unpack[LocVTPVideoProcessorKwargs]):
        super().__init__(**kwargs)
        self._validate_sampling_kwargs(
            num_clips=self.num_clips,
            frames_per_clip=self.frames_per_clip,
            frame_sampling=self.frame_sampling,
            default_fps=self.default_fps,
            video_backend=self.video_backend,
        )
        self._validate_grounding_kwargs(self.grounding_clip_seconds, self.grounding_max_clips)
        self._validate_decoding_kwargs(self.resize_while_decoding)

    def preprocess(
        self,
        videos,
        spans: Sequence[tuple[float, float] | None] | None = None,
        training: bool = False,
        video_fps: float | Sequence[float | None] | None = None,
        generator: np.random.Generator | int | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs: Unpack[LocVTPVideoProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Sample, decode and preprocess the clips of one video or a batch of videos.

        Args:
            videos: One video or a list of `B` videos; see the class docstring for the accepted types.
            spans (`list`, *optional*): One entry per video: `(start, end)` in seconds, or `None` for the whole
                video. `None` means the whole of every video. The span must lie inside the video, up to one frame
                interval of tolerance at either end.
            training (`bool`, *optional*, defaults to `False`): Random clip offsets inside their segments (training)
                instead of centred ones (evaluation).
            video_fps (`float` or `list`, *optional*): Frame rate of decoded-array and frame-list inputs, one value
                for all videos or one per video (`None` entries fall back to `default_fps`). Ignored for files, whose
                frame rate is read from the file.
            generator (`np.random.Generator` or `int`, *optional*): Random generator or seed for training offsets.
            return_tensors (`str` or [`~utils.TensorType`], *optional*): `"pt"` or `"np"` to stack the batch;
                `None` returns one entry per video.
            kwargs: Overrides of the processor's options for this call (`num_clips`, `size`, `do_normalize`, ...).

        Returns:
            [`BatchFeature`] with:

            - `pixel_values_videos`: float32, `[B, T, F, C, H, W]` with `H, W` the crop size (a list of `B`
                `[T, F, C, H, W]` tensors if `return_tensors` is `None`).
            - `clip_spans`: float32, `[B, T, 2]`: each clip's `(start, end)` in seconds in the original video
                (a list of `B` `[T, 2]` arrays if `return_tensors` is `None`).
        """
        pixel_values_videos, clip_spans, _ = self._sample_and_preprocess(
            videos, spans, training, video_fps, generator, kwargs, whole_video_clips=False
        )
        return BatchFeature(
            data={"pixel_values_videos": pixel_values_videos, "clip_spans": clip_spans}, tensor_type=return_tensors
        )

    def preprocess_grounding(
        self,
        videos,
        training: bool = False,
        video_fps: float | Sequence[float | None] | None = None,
        generator: np.random.Generator | int | None = None,
        return_tensors: str | TensorType | None = None,
        **kwargs: Unpack[LocVTPVideoProcessorKwargs],
    ) -> BatchFeature:
        r"""
        Cut each whole video into clips for temporal grounding and preprocess them: a video of `d` seconds becomes
        `min(floor(d / grounding_clip_seconds), grounding_max_clips)` clips that split it into equal segments (one
        clip of `frames_per_clip` frames per segment, sampled as in [`sample_clip_times`]). The batch is padded to
        its longest video.

        Args:
            videos: One video or a list of `B` videos; see the class docstring for the accepted types.
            training (`bool`, *optional*, defaults to `False`): Random frame offsets inside each segment.
            video_fps (`float` or `list`, *optional*): Frame rate of decoded-array and frame-list inputs.
            generator (`np.random.Generator` or `int`, *optional*): Random generator or seed for training offsets.
            return_tensors (`str` or [`~utils.TensorType`], *optional*): `"pt"` or `"np"` to stack the batch;
                `None` returns one (padded) entry per video.
            kwargs: Overrides of the processor's options for this call (`grounding_clip_seconds`, `size`, ...).

        Returns:
            [`BatchFeature`] with, for `N` the most clips of a video in the batch:

            - `pixel_values_videos`: float32, `[B, N, F, C, H, W]`, zero at padded clips.
            - `clip_mask`: int64, `[B, N]`: 1 for real clips, 0 for padding.
            - `clip_spans`: float32, `[B, N, 2]`: each clip's `(start, end)` in seconds; zero at padded clips.
            - `video_durations`: float32, `[B]`: each video's duration in seconds.

        Raises:
            `ValueError`: a video is shorter than one clip (`grounding_clip_seconds`), naming it.
        """
        pixel_values_videos, clip_spans, durations = self._sample_and_preprocess(
            videos, None, training, video_fps, generator, kwargs, whole_video_clips=True
        )
        longest = max(len(clips) for clips in pixel_values_videos)
        data = {"pixel_values_videos": [], "clip_mask": [], "clip_spans": [], "video_durations": []}
        for clips, spans, duration in zip(pixel_values_videos, clip_spans, durations, strict=True):
            padding = longest - len(clips)
            data["pixel_values_videos"].append(torch.cat([clips, clips.new_zeros(padding, *clips.shape[1:])]))
            data["clip_mask"].append((np.arange(longest) < len(clips)).astype(np.int64))
            data["clip_spans"].append(np.concatenate([spans, np.zeros((padding, 2), dtype=spans.dtype)]))
            data["video_durations"].append(np.float32(duration))
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _sample_and_preprocess(
        self, videos, spans, training: bool, video_fps, generator, kwargs: dict, whole_video_clips: bool
    ) -> tuple[list[torch.Tensor], list[np.ndarray], list[float]]:
        """
        Sample the clips of every video and preprocess their frames. Returns, per video, its clips (float32
        `[T, F, C, H, W]`), its clip spans (float32 `[T, 2]`, seconds) and its duration in seconds; `T` is
        `num_clips`, or with `whole_video_clips` the number of clips the whole video is cut into for grounding.
        """
        validate_typed_dict(self.valid_kwargs, kwargs)
        unsupported = [name for name in _UNSUPPORTED_FRAME_SELECTION_KWARGS if kwargs.get(name) not in (None, False)]
        if unsupported:
            raise ValueError(
                f"{type(self).__name__} does not take {unsupported}: it selects frames itself from `spans`, "
                "`num_clips` and `frames_per_clip`."
            )
        for name in self.valid_kwargs.__annotations__:
            kwargs.setdefault(name, getattr(self, name, None))
        sampling = {name: kwargs.pop(name) for name in _SAMPLING_KWARGS}
        self._validate_sampling_kwargs(**sampling)
        clip_seconds, max_clips = (kwargs.pop(name) for name in _GROUNDING_KWARGS)
        self._validate_grounding_kwargs(clip_seconds, max_clips)
        resize_while_decoding = kwargs.pop("resize_while_decoding")
        self._validate_decoding_kwargs(resize_while_decoding)
        device = kwargs.pop("device")
        for name in (*_UNSUPPORTED_FRAME_SELECTION_KWARGS, "return_tensors", "data_format", "input_data_format"):
            kwargs.pop(name)
        kwargs = self._standardize_kwargs(**kwargs)
        self._validate_preprocess_kwargs(**kwargs)
        decode_short_side = None
        if resize_while_decoding and kwargs["do_resize"] and sampling["video_backend"] == "pyav":
            decode_short_side = kwargs["size"].shortest_edge
        if not whole_video_clips:  # grounding bounds its clips with grounding_max_clips
            _warn_if_large_output(sampling["num_clips"], sampling["frames_per_clip"], kwargs)

        videos = make_video_list(videos)
        spans = self._per_video("spans", spans, len(videos), broadcast=False)
        fps_per_video = self._per_video("video_fps", video_fps, len(videos), broadcast=True)
        rng = np.random.default_rng(generator)

        whole_video_clip_counts = {"clip_seconds": clip_seconds, "max_clips": max_clips} if whole_video_clips else {}
        sampled_frames, clip_spans, durations = [], [], []
        for index, (video, span, fps) in enumerate(zip(videos, spans, fps_per_video, strict=True)):
            frames, video_clip_spans, duration = self._sample_clips(
                index,
                video,
                span,
                fps,
                training=training,
                rng=rng,
                decode_short_side=decode_short_side,
                **whole_video_clip_counts,
                **sampling,
            )
            sampled_frames.append(frames)
            clip_spans.append(video_clip_spans.astype(np.float32))
            durations.append(duration)

        prepared = self._prepare_input_videos(
            videos=sampled_frames, input_data_format=ChannelDimension.LAST, device=device
        )
        # The base pipeline sees each sample's T * F frames as one video; the clip structure is restored afterwards.
        # With rescaling and normalization both off it keeps uint8, hence the cast: the output is always float32.
        processed = self._preprocess(videos=prepared, return_tensors=None, **kwargs)["pixel_values_videos"]
        frames_per_clip = sampling["frames_per_clip"]
        pixel_values_videos = [
            video.reshape(-1, frames_per_clip, *video.shape[1:]).to(torch.float32) for video in processed
        ]
        return pixel_values_videos, clip_spans, durations

    @staticmethod
    def _validate_sampling_kwargs(
        num_clips: int, frames_per_clip: int, frame_sampling: str, default_fps: float, video_backend: str
    ) -> None:
        for name, value in (("num_clips", num_clips), ("frames_per_clip", frames_per_clip)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if frame_sampling not in FRAME_SAMPLING_MODES:
            raise ValueError(f"`frame_sampling` must be one of {FRAME_SAMPLING_MODES}, got {frame_sampling!r}.")
        if not isinstance(default_fps, (int, float)) or not 0 < default_fps < math.inf:
            raise ValueError(f"`default_fps` must be a positive, finite number, got {default_fps!r}.")
        if video_backend not in SUPPORTED_BACKENDS:
            raise ValueError(f"`video_backend` must be one of {SUPPORTED_BACKENDS}, got {video_backend!r}.")

    @staticmethod
    def _validate_grounding_kwargs(grounding_clip_seconds: float, grounding_max_clips: int | None) -> None:
        if not isinstance(grounding_clip_seconds, (int, float)) or not grounding_clip_seconds > 0:
            raise ValueError(f"`grounding_clip_seconds` must be a positive number, got {grounding_clip_seconds!r}.")
        max_clips_is_count = isinstance(grounding_max_clips, int) and not isinstance(grounding_max_clips, bool)
        if grounding_max_clips is not None and (not max_clips_is_count or grounding_max_clips < 1):
            raise ValueError(f"`grounding_max_clips` must be a positive integer or None, got {grounding_max_clips!r}.")

    @staticmethod
    def _validate_decoding_kwargs(resize_while_decoding: bool) -> None:
        if not isinstance(resize_while_decoding, bool):
            raise ValueError(f"`resize_while_decoding` must be True or False, got {resize_while_decoding!r}.")

    @staticmethod
    def _per_video(name: str, value, num_videos: int, broadcast: bool) -> list:
        """Expand `spans` / `video_fps` to one entry per video, checking the length of per-video lists."""
        if value is None:
            return [None] * num_videos
        if broadcast and isinstance(value, numbers.Real):
            return [value] * num_videos
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"`{name}` must be None or a list with one entry per video, got {type(value).__name__}.")
        if len(value) != num_videos:
            example = "spans=[(1.0, 2.5)]" if name == "spans" else "video_fps=[25.0]"
            raise ValueError(
                f"`{name}` has {len(value)} entries but {num_videos} video(s) were given; pass one entry per video "
                f"(e.g. {example} for a single video)."
            )
        return list(value)

    def _sample_clips(
        self,
        index: int,
        video,
        span: tuple[float, float] | None,
        fps: float | None,
        training: bool,
        rng: np.random.Generator,
        num_clips: int,
        frames_per_clip: int,
        frame_sampling: str,
        default_fps: float,
        video_backend: str,
        decode_short_side: int | None = None,
        clip_seconds: float | None = None,
        max_clips: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """
        Returns the sampled frames of one video, uint8 `[T * F, H, W, 3]` (clip-major), its clip spans `[T, 2]` and
        its duration in seconds. With `clip_seconds`, `T` is not `num_clips` but the number of clips of at least
        `clip_seconds` (at most `max_clips`) that the span is cut into. With `decode_short_side`, the frames of a
        video file whose shorter side is longer are decoded at that shorter side.
        """
        name = f"videos[{index}]"
        if fps is not None and (not isinstance(fps, numbers.Real) or not 0 < fps < math.inf):
            raise ValueError(
                f"video_fps for {name} must be a positive, finite number of frames per second, got {fps!r}."
            )

        if isinstance(video, (str, os.PathLike, EncodedVideo)):
            path = video if isinstance(video, EncodedVideo) else os.fspath(video)
            name = f"{name} ('{path}')"
            try:
                info = probe_video(path, backend=video_backend)
                start, end = self._check_span(name, span, info.duration, info.fps)
                if clip_seconds is not None:
                    num_clips = _count_whole_video_clips(name, end - start, clip_seconds, max_clips)
                times, clip_spans = sample_clip_times(
                    start, end, info.fps, num_clips, frames_per_clip, frame_sampling, training, rng
                )
                short_side = None
                if decode_short_side is not None and min(info.width, info.height) > decode_short_side:
                    short_side = decode_short_side
                frames, _ = read_frames_at(path, times.reshape(-1), backend=video_backend, short_side=short_side)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"videos[{index}]: {err}") from err
            except VideoDecodingError as err:
                raise VideoDecodingError(f"videos[{index}]: {err}") from err
            return frames, clip_spans, info.duration

        frames = self._to_frame_array(name, video)
        fps = float(fps) if fps is not None else float(default_fps)
        start, end = self._check_span(name, span, len(frames) / fps, fps)
        if clip_seconds is not None:
            num_clips = _count_whole_video_clips(name, end - start, clip_seconds, max_clips)
        times, clip_spans = sample_clip_times(
            start, end, fps, num_clips, frames_per_clip, frame_sampling, training, rng
        )
        indices = np.floor((times.reshape(-1) + TIME_TOLERANCE) * fps).astype(np.int64)
        return frames[np.clip(indices, 0, len(frames) - 1)], clip_spans, len(frames) / fps

    @staticmethod
    def _check_span(name: str, span, duration: float, fps: float) -> tuple[float, float]:
        """Validate a `(start, end)` span against the video's duration and clamp it to `[0, duration]`."""
        if span is None:
            return 0.0, duration
        if not isinstance(span, (list, tuple, np.ndarray)) or len(span) != 2:
            raise ValueError(f"The span of {name} must be a (start, end) pair of seconds or None, got {span!r}.")
        start, end = (float(value) for value in span)
        if not (np.isfinite(start) and np.isfinite(end)):
            raise ValueError(f"The span of {name} must be finite, got ({start}, {end}).")
        if start >= end:
            raise ValueError(f"The span of {name} is empty: start {start} s is not before end {end} s.")
        tolerance = 1.0 / fps
        if start < -tolerance:
            raise ValueError(f"The span of {name} starts at {start} s, before the start of the video (0 s).")
        if end > duration + tolerance:
            raise ValueError(
                f"The span of {name} ends at {end} s, after the end of the video (duration {duration:.3f} s)."
            )
        start, end = max(start, 0.0), min(end, duration)
        if start >= end:
            raise ValueError(
                f"The span of {name}, ({span[0]}, {span[1]}) s, lies outside the video (duration {duration:.3f} s)."
            )
        return start, end

    @staticmethod
    def _to_frame_array(name: str, video) -> np.ndarray:
        """Turn a decoded video (array, tensor or list of frames) into a uint8 `[N, H, W, 3]` array."""
        if isinstance(video, (list, tuple)):
            if len(video) == 0:
                raise ValueError(f"{name} is an empty list of frames.")
            frames = [np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else f for f in video]
            frames = [f.numpy(force=True) if isinstance(f, torch.Tensor) else np.asarray(f) for f in frames]
            shapes = {f.shape for f in frames}
            if len(shapes) > 1:
                raise ValueError(f"The frames of {name} must all have the same shape, got {sorted(shapes)}.")
            video = np.stack(frames)
        elif isinstance(video, torch.Tensor):
            video = video.numpy(force=True)
        elif not isinstance(video, np.ndarray):
            raise TypeError(
                f"{name} must be a file path, an EncodedVideo, a [num_frames, height, width, 3] uint8 array or "
                f"tensor, or a list of frames; got {type(video).__name__}."
            )

        if video.ndim != 4 or video.shape[-1] != 3:
            hint = (
                " It looks channels-first: permute it to [N, H, W, 3]."
                if video.ndim == 4 and video.shape[1] == 3
                else ""
            )
            raise ValueError(
                f"{name} must have shape [num_frames, height, width, 3] (RGB, channels last), got shape "
                f"{tuple(video.shape)}.{hint}"
            )
        if video.dtype != np.uint8:
            raise ValueError(
                f"{name} must be uint8 with values in 0-255, got dtype {video.dtype}; convert float frames in [0, 1] "
                "with (x * 255).round().astype(np.uint8)."
            )
        if video.shape[0] == 0 or video.shape[1] == 0 or video.shape[2] == 0:
            raise ValueError(f"{name} is empty: shape {tuple(video.shape)}.")
        return video


__all__ = ["LocVTPVideoProcessor", "LocVTPVideoProcessorKwargs", "sample_clip_times"]
