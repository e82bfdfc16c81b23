"""Tests of video decoding (`video_io`) and clip sampling / preprocessing (`LocVTPVideoProcessor`).

Synthetic videos encode each frame's index in its brightness (`index * STEP`), so that a test can read back which
frame was picked for which time. Real videos come only from `$LOCVTP_REAL_DATA/videos` (the `real_data` fixture of
the conftest, which skips when the variable is unset).
"""

import builtins
import functools
import http.server
import json
import logging
import re
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from locvtp_hf import video_io
from locvtp_hf.video_io import EncodedVideo, VideoDecodingError, VideoInfo, probe_video, read_frames_at
from locvtp_hf.video_processing_locvtp import LocVTPVideoProcessor, sample_clip_times


STEP = 6  # brightness step between consecutive synthetic frames: frame k has value k * STEP (k < 43)
SIZE = 32


def index_frames(num_frames: int, height: int = 24, width: int = 40) -> np.ndarray:
    """uint8 `[num_frames, height, width, 3]`, frame `k` uniformly `k * STEP`."""
    values = np.arange(num_frames, dtype=np.uint8)[:, None, None, None] * STEP
    return np.broadcast_to(values, (num_frames, height, width, 3)).copy()


def write_index_video(
    path,
    num_frames: int,
    fps: int = 10,
    height: int = 24,
    width: int = 40,
    gop: int = 4,
    textured: bool = False,
    faststart: bool = False,
) -> str:
    """
    Write an H.264 file (keyframe every `gop` frames, B-frames) whose frame `k` has brightness `k * STEP`.

    `textured` adds a fixed pattern of values 0-2 (which leaves the frame indices read back unchanged) so that the
    frames, not the index, make up most of the file. `faststart` puts the index at the front, as web videos are served.
    """
    texture = np.random.default_rng(0).integers(0, 3, (height, width, 1), dtype=np.uint8) if textured else 0
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "1", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2"}
        for index, pixels in enumerate(index_frames(num_frames, height, width)):
            frame = av.VideoFrame.from_ndarray(pixels + texture, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def frame_indices(frames) -> np.ndarray:
    """Indices of synthetic frames from their brightness, for `[..., H, W, 3]` or `[..., C, H, W]` frames."""
    frames = torch.as_tensor(np.asarray(frames, dtype=np.float64))
    return torch.round(frames.mean(dim=(-3, -2, -1)) / STEP).long().numpy()


def small_processor(**kwargs) -> LocVTPVideoProcessor:
    """A processor with 32 px output that keeps raw 0-255 values, so that frame indices can be read back."""
    values = dict(
        num_clips=4,
        frames_per_clip=2,
        size={"shortest_edge": SIZE},
        crop_size={"height": SIZE, "width": SIZE},
        do_rescale=False,
        do_normalize=False,
    )
    values.update(kwargs)
    return LocVTPVideoProcessor(**values)


@pytest.fixture(scope="module")
def index_video(tmp_path_factory) -> str:
    """40 frames at 10 fps (4 s), keyframe every 4 frames."""
    return write_index_video(tmp_path_factory.mktemp("videos") / "index.mp4", num_frames=40)


@pytest.fixture(scope="module")
def truncated_web_video(tmp_path_factory) -> tuple[str, str]:
    """
    A 4 s web video (40 frames at 10 fps, index first) and the first half of its bytes, as a download cut short: the
    index, and so the duration `probe_video` reports, is whole, the frames after the cut are missing.
    """
    folder = tmp_path_factory.mktemp("web")
    intact = write_index_video(folder / "intact.mp4", num_frames=40, textured=True, faststart=True)
    data = Path(intact).read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return intact, str(folder / "truncated.mp4")


@pytest.fixture(scope="module")
def served_folder(index_video):
    """An HTTP server on the loopback address serving the folder of `index_video`; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(Path(index_video).parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


# ---------------------------------------------------------------------------------------------------------------------
# video_io


def test_probe_video(index_video):
    info = probe_video(index_video)
    assert isinstance(info, VideoInfo)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(4.0)
    assert info.num_frames == 40
    assert info.path == index_video


def test_read_frames_at_returns_the_frame_shown_at_each_time(index_video):
    # Any order, repeats, exact frame boundaries, before the first and after the last frame.
    times = [2.05, 0.0, 0.5, 0.499, 3.99, 2.05, -1.0, 7.0, 1.0]
    frames, info = read_frames_at(index_video, times)
    assert frames.dtype == np.uint8 and frames.shape == (len(times), 24, 40, 3)
    assert frame_indices(frames).tolist() == [20, 0, 5, 4, 39, 20, 0, 39, 10]
    assert info.fps == pytest.approx(10.0)


def test_read_frames_at_seeks_to_late_times(index_video):
    # Only late times: decoding starts at the keyframe before 3.05 s (frame 28) and must still be exact.
    frames, _ = read_frames_at(index_video, [3.65, 3.05, 3.15])
    assert frame_indices(frames).tolist() == [36, 30, 31]


def test_read_frames_at_mkv_and_webm(tmp_path):
    for name in ("clip.mkv", "clip.webm"):
        path = tmp_path / name
        with av.open(str(path), "w") as container:
            codec = "libvpx-vp9" if name.endswith("webm") else "libx264"
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 40, 24, "yuv420p"
            stream.options = {"crf": "0"} if codec == "libx264" else {"lossless": "1"}
            for index, pixels in enumerate(index_frames(12)):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, 10)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        frames, info = read_frames_at(path, [0.05, 0.85, 0.35])
        assert frame_indices(frames).tolist() == [0, 8, 3], name
        assert info.fps == pytest.approx(10.0)


def test_read_frames_at_errors(tmp_path, index_video):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_frames_at(tmp_path / "missing.mp4", [0.0])

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("this is not a video")
    with pytest.raises(VideoDecodingError, match=r"could not open video '.*notes\.mp4'"):
        read_frames_at(not_a_video, [0.0])

    audio_only = tmp_path / "audio.mkv"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        samples.sample_rate = 8000
        container.mux(stream.encode(samples))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodingError, match=r"video '.*audio\.mkv' has no video stream"):
        probe_video(audio_only)

    # A video stream whose packets are all empty: it opens, but no frame decodes.
    no_frames = tmp_path / "no_frames.mkv"
    with av.open(str(no_frames), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
        for index in range(5):
            packet = av.Packet(bytes(200))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, 10)
            container.mux(packet)
    with pytest.raises(VideoDecodingError, match=r"video '.*no_frames\.mkv' has no decodable video frames"):
        read_frames_at(no_frames, [0.0])

    with pytest.raises(ValueError, match="non-empty"):
        read_frames_at(index_video, [])
    with pytest.raises(ValueError, match="finite"):
        read_frames_at(index_video, [float("nan")])
    with pytest.raises(ValueError, match="Unknown video backend"):
        read_frames_at(index_video, [0.0], backend="decord")


def test_torchcodec_backend_missing_gives_install_hint(index_video, monkeypatch):
    real_import = builtins.__import__

    def import_without_torchcodec(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_without_torchcodec)
    with pytest.raises(ImportError, match=r"pip install torchcodec.*FFmpeg"):
        read_frames_at(index_video, [0.0], backend="torchcodec")


def test_torchcodec_backend_matches_pyav(index_video):
    pytest.importorskip("torchcodec", reason="torchcodec is not installed")
    times = [2.05, 0.0, 0.5, 3.99, -1.0, 7.0]
    frames, info = read_frames_at(index_video, times, backend="torchcodec")
    assert frames.shape == (len(times), 24, 40, 3)
    assert frame_indices(frames).tolist() == [20, 0, 5, 39, 0, 39]
    assert info.fps == pytest.approx(10.0)


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
def test_truncated_video_raises_instead_of_repeating_its_last_frame(truncated_web_video, backend):
    if backend == "torchcodec":
        pytest.importorskip("torchcodec", reason="torchcodec is not installed")
    intact, truncated = truncated_web_video
    times = np.arange(40) / 10 + 0.05  # the middle of every frame
    assert frame_indices(read_frames_at(intact, times, backend=backend)[0]).tolist() == list(range(40))

    stopped = r"is truncated or corrupt: decoding stopped at (\d+\.\d\d) s, but a frame at 3\.95 s was requested"
    with pytest.raises(VideoDecodingError, match=rf"video '.*truncated\.mp4' {stopped}") as error:
        read_frames_at(truncated, times, backend=backend)
    reached = float(re.search(stopped, str(error.value)).group(1))
    assert 0.5 < reached < 3.0
    # The same bytes held in memory, as a sample of a shard; and a time after the cut alone (seeking past the end).
    shard_sample = EncodedVideo(Path(truncated).read_bytes(), name="shard-00012.tar/clip.mp4")
    with pytest.raises(VideoDecodingError, match=rf"video 'shard-00012\.tar/clip\.mp4' {stopped}"):
        read_frames_at(shard_sample, times, backend=backend)
    with pytest.raises(VideoDecodingError, match=rf"decoding stopped at {reached:.2f} s, but a frame at 3\.50 s"):
        read_frames_at(truncated, [3.5], backend=backend)

    # Frames before the cut still decode (leaving out the last few, which may refer to data after it).
    before_cut = times[times < reached - 0.3]
    frames, _ = read_frames_at(truncated, before_cut, backend=backend)
    assert frame_indices(frames).tolist() == list(range(len(before_cut)))


def test_truncated_video_is_caught_by_the_processor(truncated_web_video):
    intact, truncated = truncated_web_video
    # The header still gives the full duration: only decoding finds the cut.
    assert probe_video(truncated).duration == pytest.approx(4.0)
    processor = small_processor()
    assert frame_indices(processor(intact, return_tensors="np")["pixel_values_videos"]).max() > 30
    with pytest.raises(VideoDecodingError, match=r"videos\[1\]: video '.*truncated\.mp4' is truncated or corrupt"):
        processor([intact, truncated])
    shard_sample = EncodedVideo(Path(truncated).read_bytes(), name="shard-00012.tar/clip.mp4")
    with pytest.raises(VideoDecodingError, match=r"videos\[0\]: video 'shard-00012\.tar/clip\.mp4' is truncated"):
        processor(shard_sample)


# ---------------------------------------------------------------------------------------------------------------------
# Clip sampling


def test_uniform_eval_times_are_centred():
    times, spans = sample_clip_times(1.0, 5.0, fps=10.0, num_clips=2, frames_per_clip=2)
    np.testing.assert_allclose(times, [[1.5, 2.5], [3.5, 4.5]])
    # From the start of the first frame to the end of the last one.
    np.testing.assert_allclose(spans, [[1.5, 2.6], [3.5, 4.6]])


def test_consecutive_eval_frames_are_centred_in_their_segment():
    times, spans = sample_clip_times(0.0, 4.0, fps=10.0, num_clips=2, frames_per_clip=4, frame_sampling="consecutive")
    np.testing.assert_allclose(times, [[0.85, 0.95, 1.05, 1.15], [2.85, 2.95, 3.05, 3.15]])
    np.testing.assert_allclose(spans, [[0.8, 1.2], [2.8, 3.2]])


def test_consecutive_segment_shorter_than_a_clip_repeats_frames():
    times, spans = sample_clip_times(0.0, 0.2, fps=10.0, num_clips=1, frames_per_clip=4, frame_sampling="consecutive")
    np.testing.assert_allclose(times, [[0.025, 0.075, 0.125, 0.175]])
    np.testing.assert_allclose(spans, [[0.0, 0.2]])


@pytest.mark.parametrize("frame_sampling", ["uniform", "consecutive"])
def test_training_times_stay_in_their_segments_and_follow_the_seed(frame_sampling):
    def sample(seed):
        rng = np.random.default_rng(seed)
        return sample_clip_times(2.0, 10.0, 10.0, 4, 3, frame_sampling, training=True, rng=rng)

    times, spans = sample(0)
    segment_starts = 2.0 + 2.0 * np.arange(4)[:, None]
    assert np.all(times >= segment_starts) and np.all(times < segment_starts + 2.0)
    assert np.all(np.diff(times, axis=1) > 0)
    assert np.all(spans[:, 0] >= 2.0) and np.all(spans[:, 1] <= 10.0) and np.all(spans[:, 0] < spans[:, 1])
    if frame_sampling == "uniform":
        # One frame inside each third of its segment.
        thirds = np.floor((times - segment_starts) / (2.0 / 3)).astype(int)
        assert np.all(thirds == np.arange(3))
    else:
        assert np.all(np.diff(np.floor(times * 10.0), axis=1) == 1)

    np.testing.assert_array_equal(sample(0)[0], times)
    assert not np.allclose(sample(1)[0], times)


# ---------------------------------------------------------------------------------------------------------------------
# LocVTPVideoProcessor on synthetic inputs


def test_default_config():
    processor = LocVTPVideoProcessor()
    assert (processor.num_clips, processor.frames_per_clip, processor.frame_sampling) == (8, 4, "uniform")
    assert processor.default_fps == 30.0 and processor.video_backend == "pyav"
    assert dict(processor.size) == {"shortest_edge": 224}
    assert dict(processor.crop_size) == {"height": 224, "width": 224}
    assert processor.do_resize and processor.do_center_crop and processor.do_rescale and processor.do_normalize
    assert list(processor.image_mean) == [0.485, 0.456, 0.406] and list(processor.image_std) == [0.229, 0.224, 0.225]


@pytest.mark.parametrize(
    "video",
    [
        pytest.param(index_frames(40), id="numpy"),
        pytest.param(torch.from_numpy(index_frames(40)), id="tensor"),
        pytest.param([Image.fromarray(frame) for frame in index_frames(40)], id="pil_list"),
        pytest.param(list(index_frames(40)), id="array_list"),
    ],
)
def test_decoded_inputs_shapes_and_eval_frames(video):
    processor = small_processor()
    batch = processor(video, video_fps=10.0, return_tensors="pt")
    pixels, spans = batch["pixel_values_videos"], batch["clip_spans"]
    assert pixels.shape == (1, 4, 2, 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert spans.shape == (1, 4, 2) and spans.dtype == torch.float32
    # 4 s split into 4 segments of 1 s, frames at the centres of the half-second halves.
    assert frame_indices(pixels[0]).tolist() == [[2, 7], [12, 17], [22, 27], [32, 37]]
    np.testing.assert_allclose(spans[0], [[0.2, 0.8], [1.2, 1.8], [2.2, 2.8], [3.2, 3.8]], atol=1e-6)


@pytest.mark.parametrize("frame_sampling", ["uniform", "consecutive"])
@pytest.mark.parametrize("training", [False, True])
def test_file_and_array_inputs_pick_the_same_frames(index_video, frame_sampling, training):
    processor = small_processor(num_clips=3, frames_per_clip=3, frame_sampling=frame_sampling)
    from_file, from_array = (
        frame_indices(
            processor(video, spans=[(0.7, 3.6)], video_fps=10.0, training=training, generator=3)[
                "pixel_values_videos"
            ][0]
        )
        for video in (index_video, index_frames(40))
    )
    np.testing.assert_array_equal(from_file, from_array)
    assert from_file.min() >= 7 and from_file.max() <= 35


def test_normalized_output_uses_imagenet_statistics():
    processor = LocVTPVideoProcessor(
        num_clips=1, frames_per_clip=1, size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
    )
    frames = np.zeros((4, 40, 40, 3), np.uint8)
    frames[..., 0] = 255
    pixels = processor(frames, return_tensors="pt")["pixel_values_videos"]
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    torch.testing.assert_close(pixels[0, 0, 0, :, 0, 0], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_consecutive_eval_on_a_file(index_video):
    processor = small_processor(num_clips=2, frames_per_clip=4, frame_sampling="consecutive")
    batch = processor(index_video, return_tensors="np")
    assert frame_indices(batch["pixel_values_videos"][0]).tolist() == [[8, 9, 10, 11], [28, 29, 30, 31]]
    np.testing.assert_allclose(batch["clip_spans"][0], [[0.8, 1.2], [2.8, 3.2]], atol=1e-6)


def test_span_restricts_sampling(index_video):
    batch = small_processor(num_clips=2, frames_per_clip=2)([index_video], spans=[(1.0, 3.0)], return_tensors="pt")
    assert frame_indices(batch["pixel_values_videos"][0]).tolist() == [[12, 17], [22, 27]]
    np.testing.assert_allclose(batch["clip_spans"][0], [[1.2, 1.8], [2.2, 2.8]], atol=1e-6)


def test_training_sampling_follows_the_generator(index_video):
    processor = small_processor(num_clips=4, frames_per_clip=2)

    def indices(generator, training=True):
        batch = processor(index_video, training=training, generator=generator, return_tensors="pt")
        return frame_indices(batch["pixel_values_videos"][0]), batch["clip_spans"][0].numpy()

    first, spans = indices(0)
    # Each frame inside its half of its 1 s segment.
    halves = np.arange(8).reshape(4, 2)
    assert np.all(first // 5 == halves)
    assert np.all(spans[:, 0] >= np.arange(4)) and np.all(spans[:, 1] <= np.arange(1, 5) + 1e-6)
    np.testing.assert_array_equal(indices(0)[0], first)
    np.testing.assert_array_equal(indices(np.random.default_rng(0))[0], first)
    assert any(not np.array_equal(indices(seed)[0], first) for seed in range(1, 4))
    # Evaluation ignores the generator.
    np.testing.assert_array_equal(indices(1, training=False)[0], indices(2, training=False)[0])


def test_short_video_repeats_frames(tmp_path):
    processor = small_processor(num_clips=4, frames_per_clip=4)
    short_file = write_index_video(tmp_path / "short.mp4", num_frames=3)
    batch = processor([index_frames(3), short_file], video_fps=10.0, return_tensors="pt")
    assert batch["pixel_values_videos"].shape == (2, 4, 4, 3, SIZE, SIZE)
    for video in batch["pixel_values_videos"]:
        indices = frame_indices(video).reshape(-1)
        assert sorted(set(indices.tolist())) == [0, 1, 2]
        assert np.all(np.diff(indices) >= 0)


def test_default_fps_and_per_video_fps():
    processor = small_processor(num_clips=1, frames_per_clip=2, default_fps=20.0)
    batch = processor([index_frames(40), index_frames(40)], video_fps=[None, 10.0], return_tensors="pt")
    # 40 frames are 2 s at the default 20 fps and 4 s at 10 fps.
    np.testing.assert_allclose(batch["clip_spans"][:, 0, 1], [1.55, 3.1], atol=1e-6)
    assert frame_indices(batch["pixel_values_videos"]).tolist() == [[[10, 30]], [[10, 30]]]


def test_call_overrides_and_return_types():
    processor = small_processor()
    batch = processor([index_frames(8), index_frames(12)], video_fps=10.0, num_clips=2, frames_per_clip=1)
    assert isinstance(batch["pixel_values_videos"], list) and len(batch["pixel_values_videos"]) == 2
    assert batch["pixel_values_videos"][0].shape == (2, 1, 3, SIZE, SIZE)
    assert batch["clip_spans"][1].shape == (2, 2)
    assert processor.num_clips == 4
    numpy_batch = processor(index_frames(8), video_fps=10.0, return_tensors="np")
    assert isinstance(numpy_batch["pixel_values_videos"], np.ndarray)
    assert numpy_batch["pixel_values_videos"].shape == (1, 4, 2, 3, SIZE, SIZE)


def test_input_errors(tmp_path, index_video):
    processor = small_processor()
    frames = index_frames(40)

    with pytest.raises(FileNotFoundError, match=r"videos\[1\].*missing\.mp4"):
        processor([frames, tmp_path / "missing.mp4"])
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(VideoDecodingError, match=r"videos\[0\].*broken\.mp4"):
        processor(corrupt)

    with pytest.raises(ValueError, match=r"videos\[0\].*start 2\.0 s is not before end 1\.0 s"):
        processor(frames, spans=[(2.0, 1.0)], video_fps=10.0)
    with pytest.raises(ValueError, match=r"videos\[0\].*starts at -1\.0 s"):
        processor(frames, spans=[(-1.0, 1.0)], video_fps=10.0)
    with pytest.raises(ValueError, match=r"videos\[1\] \('.*index\.mp4'\).*duration 4\.000 s"):
        processor([frames, index_video], spans=[None, (1.0, 4.5)], video_fps=10.0)
    # One frame interval of tolerance at the end.
    assert processor(frames, spans=[(1.0, 4.05)], video_fps=10.0, return_tensors="pt")["clip_spans"].max() <= 4.0
    with pytest.raises(ValueError, match=r"`spans` has 2 entries but 1 video"):
        processor(frames, spans=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"`spans` has 1 entries but 2 video"):
        processor([frames, frames], spans=[(1.0, 2.0)])
    with pytest.raises(ValueError, match=r"videos\[0\].*\(start, end\) pair"):
        processor(frames, spans=[(1.0, 2.0, 3.0)])

    with pytest.raises(ValueError, match=r"videos\[0\] is empty"):
        processor(np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"videos\[0\] is an empty list of frames"):
        processor([[]])
    with pytest.raises(ValueError, match=r"videos\[0\].*channels-first"):
        processor(np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"videos\[1\] must have shape \[num_frames, height, width, 3\]"):
        processor([frames, np.zeros((4, 8, 8, 4), np.uint8)])
    with pytest.raises(ValueError, match=r"videos\[0\] must be uint8"):
        processor(frames.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"videos\[0\] must all have the same shape"):
        processor([[np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)]])
    with pytest.raises(ValueError, match="`videos` is empty"):
        processor([])

    with pytest.raises(ValueError, match=r"video_fps for videos\[0\] must be a positive"):
        processor(frames, video_fps=0.0)
    with pytest.raises(ValueError, match=r"video_fps for videos\[1\] must be a positive"):
        processor([frames, frames], video_fps=[10.0, -5.0])
    for fps in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"video_fps for videos\[0\] must be a positive, finite number"):
            processor(frames, video_fps=fps)
    with pytest.raises(ValueError, match="`default_fps` must be a positive, finite number, got inf"):
        LocVTPVideoProcessor(default_fps=float("inf"))
    with pytest.raises(ValueError, match="does not take"):
        processor(frames, num_frames=16)
    with pytest.raises(ValueError, match="`num_clips` must be a positive integer"):
        LocVTPVideoProcessor(num_clips=0)
    with pytest.raises(ValueError, match="`frame_sampling` must be one of"):
        LocVTPVideoProcessor(frame_sampling="random")


def test_many_clips_warn_with_the_memory_they_take(tmp_path, caplog):
    processor = LocVTPVideoProcessor()  # 4 frames per clip, 224 px
    missing = tmp_path / "missing.mp4"
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError):
        processor(missing, num_clips=256)  # 0.6 GiB per video: no warning
    assert "GiB" not in caplog.text
    # The warning comes before anything is decoded (here the file does not even exist).
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError):
        processor(missing, num_clips=2000)
    assert "num_clips=2000 clips of frames_per_clip=4 frames at 224x224 px take 4.5 GiB" in caplog.text


def test_save_and_load_round_trip(tmp_path, index_video):
    processor = LocVTPVideoProcessor(
        num_clips=3,
        frames_per_clip=2,
        frame_sampling="consecutive",
        size={"shortest_edge": SIZE},
        crop_size={"height": SIZE, "width": SIZE},
        default_fps=12.0,
    )
    processor.save_pretrained(tmp_path / "saved")
    with open(tmp_path / "saved" / "video_preprocessor_config.json") as file:
        saved = json.load(file)
    assert saved["video_processor_type"] == "LocVTPVideoProcessor"
    assert {key: saved[key] for key in ("num_clips", "frames_per_clip", "frame_sampling", "default_fps")} == {
        "num_clips": 3,
        "frames_per_clip": 2,
        "frame_sampling": "consecutive",
        "default_fps": 12.0,
    }
    assert saved["video_backend"] == "pyav" and saved["crop_size"] == {"height": SIZE, "width": SIZE}
    assert saved["resize_while_decoding"] is False  # the output of processors saved before the option existed

    loaded = LocVTPVideoProcessor.from_pretrained(tmp_path / "saved")
    assert loaded.to_dict() == processor.to_dict()
    videos = [index_video, index_frames(30)]
    for training in (False, True):
        expected = processor(videos, training=training, generator=7, return_tensors="pt")
        actual = loaded(videos, training=training, generator=7, return_tensors="pt")
        torch.testing.assert_close(actual["pixel_values_videos"], expected["pixel_values_videos"], rtol=0, atol=0)
        torch.testing.assert_close(actual["clip_spans"], expected["clip_spans"], rtol=0, atol=0)


def test_frames_larger_than_the_edge_are_shrunk_while_decoding(tmp_path, index_video, monkeypatch):
    large = write_index_video(tmp_path / "large.mp4", num_frames=40, height=48, width=80, textured=True)
    assert (probe_video(large).width, probe_video(large).height) == (80, 48)
    decoded_short_sides = []

    def recording_read(path, times, backend="pyav", short_side=None):
        decoded_short_sides.append(short_side)
        return read_frames_at(path, times, backend=backend, short_side=short_side)

    monkeypatch.setattr("locvtp_hf.video_processing_locvtp.read_frames_at", recording_read)
    processor = small_processor(resize_while_decoding=True)
    while_decoding = processor(large, return_tensors="pt")["pixel_values_videos"]
    after_decoding = processor(large, return_tensors="pt", resize_while_decoding=False)["pixel_values_videos"]
    assert decoded_short_sides == [SIZE, None]
    assert while_decoding.shape == after_decoding.shape == (1, 4, 2, 3, SIZE, SIZE)
    np.testing.assert_array_equal(frame_indices(while_decoding[0]), frame_indices(after_decoding[0]))
    assert (while_decoding - after_decoding).abs().mean() < 1.0  # raw 0-255 values: area vs bilinear averaging
    assert not torch.equal(while_decoding, after_decoding)

    # a video whose frames are smaller than the edge is decoded at its own size, with identical output
    decoded_short_sides.clear()
    small = [processor(index_video, return_tensors="pt", resize_while_decoding=flag) for flag in (True, False)]
    assert decoded_short_sides == [None, None]
    torch.testing.assert_close(small[0]["pixel_values_videos"], small[1]["pixel_values_videos"], rtol=0, atol=0)
    # nothing to shrink to without a shortest edge
    decoded_short_sides.clear()
    processor(large, size={"height": SIZE, "width": SIZE})
    assert decoded_short_sides == [None]

    with pytest.raises(ValueError, match="resize_while_decoding"):
        small_processor(resize_while_decoding="yes")


# ---------------------------------------------------------------------------------------------------------------------
# Real videos


REAL_VIDEOS = [
    "bigbuckbunny.mp4",
    "bikes.mp4",
    "carphone_pristine.mp4",
    "carphone_distorted.mp4",
    "flipping_a_pancake.mkv",
    "charades_example.mp4",
]


@pytest.mark.parametrize("name", REAL_VIDEOS)
def test_real_video(real_data, name):
    path = real_data / "videos" / name
    info = probe_video(path)
    processor = LocVTPVideoProcessor(
        num_clips=4, frames_per_clip=2, size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE}
    )
    batch = processor(str(path), return_tensors="pt")
    pixels, spans = batch["pixel_values_videos"], batch["clip_spans"]
    # The end of the duration is not mistaken for a cut (the mkv's duration is its audio's, 1.4 frames longer).
    assert read_frames_at(path, [info.duration - 1e-3])[0].shape[0] == 1
    assert pixels.shape == (1, 4, 2, 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert torch.isfinite(pixels).all() and pixels.std() > 0
    assert spans.shape == (1, 4, 2)
    assert spans.min() >= 0 and spans.max() <= info.duration + 1e-4
    assert torch.all(spans[0, :, 0] < spans[0, :, 1]) and torch.all(spans[0, 1:, 0] >= spans[0, :-1, 1] - 1e-4)
    # shrunk while decoding: the same frames, averaged differently (0.04-0.13 on average at 32 px on these videos)
    shrunk = processor(str(path), return_tensors="pt", resize_while_decoding=True)["pixel_values_videos"]
    assert shrunk.shape == pixels.shape and (shrunk - pixels).abs().mean() < 0.2


def test_real_long_video_with_audio_span(real_data):
    path = real_data / "videos" / "charades_example.mp4"
    info = probe_video(path)
    assert info.duration > 30 and info.fps == pytest.approx(15000 / 1001)
    processor = small_processor(num_clips=4, frames_per_clip=2)
    batch = processor([path, path], spans=[(12.0, 20.0), None], training=True, generator=0, return_tensors="pt")
    assert batch["pixel_values_videos"].shape == (2, 4, 2, 3, SIZE, SIZE)
    assert batch["clip_spans"][0].min() >= 12.0 and batch["clip_spans"][0].max() <= 20.0
    with pytest.raises(ValueError, match=r"videos\[0\].*charades_example\.mp4.*duration 30\.\d+ s"):
        processor(path, spans=[(25.0, 40.0)])


def test_real_corrupted_video(real_data):
    path = real_data / "videos" / "corrupted.mp4"
    with pytest.raises(VideoDecodingError, match=r"videos\[0\]: video '.*corrupted\.mp4' is corrupt or unreadable"):
        LocVTPVideoProcessor(num_clips=2, frames_per_clip=2)(path)
    # Decoding stops after the last requested time, so frames before the damaged part still decode.
    frames, _ = read_frames_at(path, [0.5, 1.0])
    assert frames.shape == (2, 720, 1280, 3)


def test_video_urls_are_read_like_the_files_they_serve(index_video, served_folder):
    url = f"{served_folder}/{Path(index_video).name}"
    assert probe_video(url).duration == probe_video(index_video).duration
    assert probe_video(url).num_frames == probe_video(index_video).num_frames
    times = [0.05, 1.25, 3.95]
    from_url, _ = read_frames_at(url, times)
    from_file, _ = read_frames_at(index_video, times)
    assert np.array_equal(from_url, from_file)
    processor = small_processor()
    assert torch.equal(
        processor([url], return_tensors="pt")["pixel_values_videos"],
        processor([index_video], return_tensors="pt")["pixel_values_videos"],
    )
    with pytest.raises(VideoDecodingError, match=r"missing\.mp4.*404"):
        probe_video(f"{served_folder}/missing.mp4")
