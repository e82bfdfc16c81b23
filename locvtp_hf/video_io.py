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
"""Decoding of selected frames from video files (PyAV by default, torchcodec optionally).

Times are in seconds from the start of the video stream: `0.0` is the first frame. The frame returned for a time
`t` is the frame being shown at `t`, i.e. the last frame whose presentation time is `<= t` (as torchcodec's
`get_frames_played_at`). Times before the first frame get the first frame, times after the last frame get the last
frame, but only near the end of the video: a file whose frames stop more than `TRUNCATION_TOLERANCE_FRAMES` frame
durations before a requested time, and before the duration its header gives (e.g. a download cut short), raises
[`VideoDecodingError`] instead of repeating its last decodable frame.
"""

import io
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


SUPPORTED_BACKENDS = ("pyav", "torchcodec")

# A frame whose presentation time is within this many seconds after `t` still counts as shown at `t`: requested times
# that fall exactly on a frame boundary (e.g. 0.5 s at 10 fps) must pick the same frame whether the boundary comes from
# the container's integer timestamps or from float arithmetic on the nominal frame grid.
TIME_TOLERANCE = 1e-6

# Requested times may lie this many frame durations after the end of the last decodable frame before the video counts
# as truncated: the header's duration can exceed the video stream's frames a little (in Matroska it is the longest
# stream's, often the audio's).
TRUNCATION_TOLERANCE_FRAMES = 2

# Requested times further apart than this are read in separate stretches, each with its own seek: reading the packets
# between them (without decoding the groups of pictures that show no requested frame) would cost more than a seek.
SEEK_GAP_SECONDS = 10.0


class VideoDecodingError(ValueError):
    """
    Raised when a video file exists but cannot be opened or decoded, holds no decodable video frames, or is truncated
    (its frames stop before the times asked for, inside the duration its header gives).
    """


@dataclass(frozen=True)
class EncodedVideo:
    """
    A video file's bytes held in memory, e.g. a sample of a webdataset tar shard or a binary column of a parquet file.

    Args:
        data (`bytes`): The whole encoded file (mp4, mkv, webm, ...).
        name (`str`): What error messages call it, e.g. `"shard-00012.tar/clip_0042.mp4"`.
    """

    data: bytes = field(repr=False)
    name: str = "<in-memory video>"

    def __str__(self) -> str:
        return self.name


VideoSource = str | os.PathLike | EncodedVideo
# Read over the network by FFmpeg itself (it seeks with HTTP range requests where the server supports them).
URL_SCHEMES = ("http://", "https://")


@dataclass
class VideoInfo:
    """
    Stream-level facts about a video.

    Attributes:
        fps (`float`): Average frame rate of the video stream.
        duration (`float`): Duration of the video stream in seconds.
        num_frames (`int`): Number of frames; read from the header when present, else `round(duration * fps)`, so it
            is an estimate for some containers (e.g. Matroska).
        path (`str`, *optional*): The file the facts come from; the name of an [`EncodedVideo`].
        width (`int`, *optional*), height (`int`, *optional*): Frame size in pixels, as decoded.
    """

    fps: float
    duration: float
    num_frames: int
    path: str | None = None
    width: int | None = None
    height: int | None = None


def probe_video(path: VideoSource, backend: str = "pyav") -> VideoInfo:
    """
    Read the frame rate, duration, frame count and frame size of a video file without decoding it.

    Args:
        path (`str`, `os.PathLike` or [`EncodedVideo`]): Video file (mp4, mkv, webm, ...), an http(s) URL of one,
            or its bytes.
        backend (`str`, *optional*, defaults to `"pyav"`): `"pyav"` or `"torchcodec"`.

    Returns:
        [`VideoInfo`]

    Raises:
        `FileNotFoundError`: the file does not exist.
        [`VideoDecodingError`]: the file cannot be opened or has no video stream.
    """
    path = _check_path(path, backend)
    if backend == "torchcodec":
        return _torchcodec_info(_open_torchcodec(path), path)
    with _open_pyav(path) as container:
        return _pyav_info(container, _pyav_video_stream(container, path), path)


def read_frames_at(
    path: VideoSource, timestamps: Sequence[float], backend: str = "pyav", short_side: int | None = None
) -> tuple[np.ndarray, VideoInfo]:
    """
    Decode the frames shown at the given times.

    With the PyAV backend the requested times are read in stretches (times more than `SEEK_GAP_SECONDS` apart start
    a new one): one seek per stretch, to the keyframe at or before its first time, then its packets are read up to its
    last time. Only the packets that the requested frames need are decoded: a group of pictures that shows none of
    them is not decoded, nor the packets of a group after its last requested frame, and the decoder skips the
    non-reference frames (e.g. most B-frames) that are not requested. Only the requested frames are converted to RGB,
    so memory holds at most one RGB array per distinct requested frame whatever the length of the video. Streams
    whose packets carry no presentation times are decoded sequentially from the keyframe before the earliest time.

    Args:
        path (`str`, `os.PathLike` or [`EncodedVideo`]): Video file (mp4, mkv, webm, ...), an http(s) URL of one,
            or its bytes. Audio and other streams are ignored.
        timestamps (`Sequence[float]`): `N` times in seconds from the start of the video, in any order, repeats
            allowed.
        backend (`str`, *optional*, defaults to `"pyav"`): `"pyav"` or `"torchcodec"`.
        short_side (`int`, *optional*): Resize the frames so that their shorter side has this many pixels (aspect
            ratio kept, the longer side rounded), in FFmpeg's scaler while they are converted to RGB (area
            averaging), instead of returning them at the video's size. PyAV backend only.

    Returns:
        `tuple[np.ndarray, VideoInfo]`: the frames, `uint8` of shape `[N, H, W, 3]` (RGB) in the order of
        `timestamps`, and the video's [`VideoInfo`].

    Raises:
        `FileNotFoundError`: the file does not exist.
        [`VideoDecodingError`]: the file cannot be opened or decoded, has no decodable video frame, or its frames
            stop short of a requested time that lies inside the duration its header gives (a truncated file).
        `ValueError`: `timestamps` is empty or holds non-finite values, or `short_side` is not a positive integer
            or is given with the torchcodec backend.
    """
    path = _check_path(path, backend)
    times = np.asarray(timestamps, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"`timestamps` must be a non-empty 1-D sequence of seconds, got shape {times.shape}.")
    if not np.all(np.isfinite(times)):
        raise ValueError(f"`timestamps` must be finite numbers of seconds, got {times.tolist()}.")
    if short_side is not None:
        if not isinstance(short_side, int) or isinstance(short_side, bool) or short_side < 1:
            raise ValueError(f"`short_side` must be a positive number of pixels, got {short_side!r}.")
        if backend != "pyav":
            raise ValueError("`short_side` (resizing while decoding) needs the pyav backend.")
    if backend == "torchcodec":
        return _read_frames_torchcodec(path, times)
    return _read_frames_pyav(path, times, short_side)


def _check_decoded_until(
    path: str | EncodedVideo, decoded_until: float, requested: float, header_duration: float, fps: float
) -> None:
    """
    Raise if the video's decodable frames end (at `decoded_until` seconds) more than `TRUNCATION_TOLERANCE_FRAMES`
    frame durations before `requested`, or before `header_duration` when `requested` lies after it.
    """
    if min(requested, header_duration) > decoded_until + TRUNCATION_TOLERANCE_FRAMES / fps:
        raise VideoDecodingError(
            f"video '{path}' is truncated or corrupt: decoding stopped at {decoded_until:.2f} s, but a frame at "
            f"{requested:.2f} s was requested (its header gives a duration of {header_duration:.2f} s)"
        )


def _check_path(path: VideoSource, backend: str) -> str | EncodedVideo:
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"Unknown video backend {backend!r}; expected one of {SUPPORTED_BACKENDS}.")
    if isinstance(path, EncodedVideo):
        if not path.data:
            raise VideoDecodingError(f"video '{path}' is empty (0 bytes)")
        return path
    path = os.fspath(path)
    if isinstance(path, str) and path.startswith(URL_SCHEMES):
        return path  # an unreachable URL fails to open: VideoDecodingError with FFmpeg's reason (e.g. 404 Not Found)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file '{path}' does not exist")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# PyAV: imported by the functions that decode, not with this module, which `import locvtp_hf` loads (through the
# video processor) before any video is read.


def _open_pyav(path: str | EncodedVideo):
    import av

    try:
        return av.open(io.BytesIO(path.data) if isinstance(path, EncodedVideo) else path)
    except av.FFmpegError as err:
        raise VideoDecodingError(f"could not open video '{path}': {_ffmpeg_reason(err)}") from err


def _ffmpeg_reason(err: Exception) -> str:
    # PyAV errors carry the FFmpeg message in `strerror`; `str(err)` also repeats the errno and the C function name.
    return getattr(err, "strerror", None) or str(err)


def _pyav_video_stream(container, path: str | EncodedVideo):
    if not container.streams.video:
        raise VideoDecodingError(f"video '{path}' has no video stream")
    return container.streams.video[0]


def _pyav_info(container, stream, path: str | EncodedVideo) -> VideoInfo:
    import av

    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise VideoDecodingError(f"video '{path}' has no frame rate information")
    fps = float(rate)
    if stream.duration is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    elif stream.frames:
        duration = stream.frames / fps
    else:
        raise VideoDecodingError(f"video '{path}' has no duration information")
    num_frames = stream.frames if stream.frames else round(duration * fps)
    return VideoInfo(
        fps=fps, duration=duration, num_frames=num_frames, path=str(path), width=stream.width, height=stream.height
    )


def _decode_from(container, stream, seek_pts: int | None):
    """Yield the stream's frames in presentation order, after seeking to the keyframe at or before `seek_pts`."""
    if seek_pts is not None:
        container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
    yield from container.decode(stream)


def _read_frames_pyav(
    path: str | EncodedVideo, times: np.ndarray, short_side: int | None = None
) -> tuple[np.ndarray, VideoInfo]:
    import av

    order = np.argsort(times, kind="stable")
    with _open_pyav(path) as container:
        stream = _pyav_video_stream(container, path)
        info = _pyav_info(container, stream, path)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = _decoder_threads()
        time_base = stream.time_base
        stream_start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        targets = times[order] + stream_start
        picked: list[np.ndarray | None] = [None] * len(times)
        breaks = (np.flatnonzero(np.diff(targets) > SEEK_GAP_SECONDS) + 1).tolist()
        for begin, end in zip([0, *breaks], [*breaks, len(targets)], strict=True):
            stretch = targets[begin:end]
            try:
                packets, reached_end = _demux_stretch(container, stream, stretch[0], stretch[-1], begin > 0)
            except av.FFmpegError as err:
                raise VideoDecodingError(f"video '{path}' is corrupt or unreadable: {_ffmpeg_reason(err)}") from err
            if packets is None:
                frames, info = _read_frames_sequential(path, times)
                if short_side is not None:
                    reformatter = av.video.reformatter.VideoReformatter()
                    frames = np.stack([
                        _to_rgb(reformatter, av.VideoFrame.from_ndarray(frame, format="rgb24"), short_side)
                        for frame in frames
                    ])
                return frames, info
            if not packets:
                raise VideoDecodingError(f"video '{path}' has no decodable video frames")
            # The frame shown at a time is the last one presented at or before it (the first one before the first).
            presented = sorted(packet.pts for packet in packets)
            seconds = np.array(presented, dtype=np.float64) * float(time_base)
            shown = np.maximum(np.searchsorted(seconds, stretch + TIME_TOLERANCE, side="right") - 1, 0)
            if reached_end and stretch[-1] + TIME_TOLERANCE >= seconds[-1]:
                # The last times lie after the last frame, which is shown for one frame duration.
                decoded_until = seconds[-1] - stream_start + 1.0 / info.fps
                _check_decoded_until(path, decoded_until, times[order[end - 1]], info.duration, info.fps)
            needed = {presented[index] for index in shown}
            frames = _decode_needed(stream, packets, needed, short_side, path, stream_start)
            for target_index, index in zip(order[begin:end], shown, strict=True):
                if presented[index] not in frames:
                    raise VideoDecodingError(
                        f"video '{path}' is corrupt: the frame at {seconds[index] - stream_start:.2f} s could not be "
                        "decoded"
                    )
                picked[target_index] = frames[presented[index]]
    return np.stack(picked), info


def _decoder_threads() -> int:
    """FFmpeg decoding threads: in a DataLoader worker, its share of the cores (at least one: more would only contend
    with the other workers), else 0, FFmpeg's choice (one per core)."""
    import torch.utils.data

    worker = torch.utils.data.get_worker_info()
    if worker is None:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // worker.num_workers)


def _demux_stretch(container, stream, first: float, last: float, seek: bool) -> tuple[list | None, bool]:
    """
    The packets, in decode order, from the keyframe at or before `first` (seconds, stream time; from the start of the
    stream when there is no earlier seek: `seek=False` and `first` in its first group of pictures) to the last one
    that can be presented at or before `last`, and whether the stream ended before `last`. `None` instead of the
    packets when one carries no presentation time.
    """
    time_base = stream.time_base
    seek_pts = math.floor(first / time_base) if seek or first > float((stream.start_time or 0) * time_base) else None
    packets, reached_end = _demux_from(container, stream, seek_pts, last)
    if seek_pts is not None and packets is not None and (
        not packets or float(packets[0].pts * time_base) > first + TIME_TOLERANCE
    ):
        # The seek landed after `first` (a broken keyframe index) or past the end of a truncated file: read from the
        # start instead.
        packets, reached_end = _demux_from(container, stream, stream.start_time or 0, last)
    return packets, reached_end


def _demux_from(container, stream, seek_pts: int | None, last: float) -> tuple[list | None, bool]:
    if seek_pts is not None:
        container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
    packets = []
    # Decode times never decrease and never exceed presentation times: after a packet decoded after `last`, no packet
    # is presented at or before it.
    last_pts = (last + TIME_TOLERANCE) / float(stream.time_base)
    for packet in container.demux(stream):
        if packet.size == 0:  # the end-of-stream marker
            continue
        if packet.pts is None:
            return None, False
        if (packet.dts if packet.dts is not None else packet.pts) > last_pts:
            return packets, False
        packets.append(packet)
    return packets, True


def _decode_needed(
    stream, packets: list, needed: set[int], short_side: int | None, path: str | EncodedVideo, stream_start: float
) -> dict[int, np.ndarray]:
    """
    Decode the frames presented at the times `needed` (in stream time units) from `packets` (decode order, starting at
    a keyframe) and convert them to RGB arrays (resized to `short_side`), keyed by presentation time.
    """
    import av

    codec = stream.codec_context
    # One scaler for all the frames: a frame's own `to_ndarray` sets up a new one each time, which costs more than
    # converting a small frame.
    reformatter = av.video.reformatter.VideoReformatter()
    frames: dict[int, np.ndarray] = {}
    decoded_until = 0.0

    def keep(decoded) -> None:
        nonlocal decoded_until
        for frame in decoded:
            decoded_until = max(decoded_until, frame.time - stream_start)
            if frame.pts in needed and frame.pts not in frames:
                frames[frame.pts] = _to_rgb(reformatter, frame, short_side)

    try:
        for packet in itertools.compress(packets, _packets_to_decode(packets, needed)):
            codec.skip_frame = "DEFAULT" if packet.pts in needed else "NONREF"
            keep(codec.decode(packet))
        codec.skip_frame = "DEFAULT"
        keep(codec.decode(None))
    except av.FFmpegError as err:
        raise VideoDecodingError(
            f"video '{path}' is corrupt or unreadable: decoding failed after {decoded_until:.2f} s "
            f"({_ffmpeg_reason(err)})"
        ) from err
    finally:
        codec.skip_frame = "DEFAULT"
        codec.flush_buffers()
    return frames


def _packets_to_decode(packets: list, needed: set[int]) -> np.ndarray:
    """
    Which of `packets` (decode order, starting at a keyframe) the frames presented at `needed` need, as a boolean mask:
    in each group of pictures (from a keyframe to the next) the packets up to its last needed one, and all of them when
    the next group's leading pictures (presented before its keyframe, which they may reference across) are needed.
    """
    keys = [index for index, packet in enumerate(packets) if packet.is_keyframe]
    groups = list(itertools.pairwise(sorted({0, *keys, len(packets)})))
    send = np.zeros(len(packets), dtype=bool)
    for group, (begin, end) in enumerate(groups):
        wanted = [index for index in range(begin, end) if packets[index].pts in needed]
        if wanted:
            send[begin : wanted[-1] + 1] = True
        if group + 1 < len(groups):
            next_begin, next_end = groups[group + 1]
            key_pts = packets[next_begin].pts
            if any(packet.pts in needed and packet.pts < key_pts for packet in packets[next_begin:next_end]):
                send[begin:end] = True
    return send


def _to_rgb(reformatter, frame, short_side: int | None) -> np.ndarray:
    """A decoded frame as a uint8 `[H, W, 3]` RGB array, its shorter side resized to `short_side` when given."""
    if short_side is None:
        return reformatter.reformat(frame, format="rgb24").to_ndarray()
    scale = short_side / min(frame.width, frame.height)
    width, height = (max(1, round(side * scale)) for side in (frame.width, frame.height))
    return reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


def _read_frames_sequential(path: str | EncodedVideo, times: np.ndarray) -> tuple[np.ndarray, VideoInfo]:
    """
    The frames shown at `times`, decoding every frame from the keyframe at or before the earliest time to the latest:
    the path for streams whose packets carry no presentation times (e.g. AVI with B-frames), which
    `_read_frames_pyav` needs to plan its reads.
    """
    import av

    order = np.argsort(times, kind="stable")
    with _open_pyav(path) as container:
        stream = _pyav_video_stream(container, path)
        info = _pyav_info(container, stream, path)
        stream.thread_type = "AUTO"
        time_base = stream.time_base
        stream_start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        targets = times[order] + stream_start

        # Seek only when the earliest target lies after the first frame; the seek position is in stream time units.
        seek_pts = None
        if targets[0] > stream_start:
            seek_pts = math.floor(targets[0] / time_base)

        picked: list[np.ndarray | None] = [None] * len(times)
        next_target = 0
        shown, shown_rgb = None, None
        last_time = stream_start
        try:
            frames = _decode_from(container, stream, seek_pts)
            first = next(frames, None)
            if seek_pts is not None and (first is None or first.time > targets[0] + TIME_TOLERANCE):
                # The seek landed after the earliest target (a broken keyframe index) or past the end of a truncated
                # file: decode from the start instead.
                frames = _decode_from(container, stream, stream.start_time or 0)
                first = next(frames, None)
            if first is None:
                raise VideoDecodingError(f"video '{path}' has no decodable video frames")

            for frame in itertools.chain([first], frames):
                last_time = frame.time
                # A target before the very first decoded frame gets that frame.
                if shown is None:
                    shown = frame
                # Every target before this frame's presentation time is shown by the previous frame.
                while next_target < len(targets) and targets[next_target] + TIME_TOLERANCE < frame.time:
                    if shown_rgb is None:
                        shown_rgb = shown.to_ndarray(format="rgb24")
                    picked[order[next_target]] = shown_rgb
                    next_target += 1
                if next_target == len(targets):
                    break
                if shown is not frame:
                    shown, shown_rgb = frame, None
        except av.FFmpegError as err:
            raise VideoDecodingError(
                f"video '{path}' is corrupt or unreadable: decoding failed after "
                f"{last_time - stream_start:.2f} s ({_ffmpeg_reason(err)})"
            ) from err

        if next_target < len(targets):
            # The remaining targets lie after the last decodable frame, which is shown for one frame duration.
            decoded_until = last_time - stream_start + 1.0 / info.fps
            _check_decoded_until(path, decoded_until, times[order[-1]], info.duration, info.fps)
            last_rgb = shown_rgb if shown_rgb is not None else shown.to_ndarray(format="rgb24")
            for index in order[next_target:]:
                picked[index] = last_rgb
    return np.stack(picked), info


# ---------------------------------------------------------------------------------------------------------------------
# torchcodec


def _open_torchcodec(path: str | EncodedVideo):
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError as err:
        raise ImportError(
            "The 'torchcodec' video backend needs the torchcodec package and the FFmpeg shared libraries it links "
            "against: `pip install torchcodec` and install FFmpeg (e.g. `apt-get install ffmpeg` or "
            "`conda install ffmpeg`). Or use video_backend='pyav', which bundles its own FFmpeg."
        ) from err
    try:
        return VideoDecoder(path.data if isinstance(path, EncodedVideo) else path, dimension_order="NHWC")
    except (RuntimeError, ValueError) as err:
        raise VideoDecodingError(f"could not open video '{path}': {err}") from err


def _torchcodec_info(decoder, path: str | EncodedVideo) -> VideoInfo:
    metadata = decoder.metadata
    if not metadata.average_fps:
        raise VideoDecodingError(f"video '{path}' has no frame rate information")
    if not metadata.num_frames:
        raise VideoDecodingError(f"video '{path}' has no decodable video frames")
    duration = float(metadata.end_stream_seconds - metadata.begin_stream_seconds)
    return VideoInfo(
        fps=float(metadata.average_fps),
        duration=duration,
        num_frames=metadata.num_frames,
        path=str(path),
        width=metadata.width,
        height=metadata.height,
    )


def _read_frames_torchcodec(path: str | EncodedVideo, times: np.ndarray) -> tuple[np.ndarray, VideoInfo]:
    decoder = _open_torchcodec(path)
    info = _torchcodec_info(decoder, path)
    begin, end = decoder.metadata.begin_stream_seconds, decoder.metadata.end_stream_seconds
    header_duration = decoder.metadata.duration_seconds_from_header
    if header_duration is not None:
        # torchcodec scans the file's packets when it opens it: `end` is where they end, whatever the header says.
        _check_decoded_until(path, end - begin, times.max(), header_duration, info.fps)
    # torchcodec only accepts times in [begin, end); outside that range the first / last frame is the one shown.
    seconds = np.clip(times + begin, begin, np.nextafter(end, begin))
    try:
        batch = decoder.get_frames_played_at(seconds=seconds.tolist())
    except (RuntimeError, ValueError) as err:
        raise VideoDecodingError(f"video '{path}' is corrupt or unreadable: {err}") from err
    return batch.data.numpy(), info
