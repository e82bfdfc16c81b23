"""Planned decoding returns the frames that decoding every frame returns; training shards round-trip and resume."""

import importlib.util
import json
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from locvtp_hf import video_io
from locvtp_hf.data import StreamingVideoTextDataset
from locvtp_hf.video_io import VideoDecodingError, probe_video, read_frames_at
from locvtp_hf.video_processing_locvtp import sample_clip_times
from locvtp_hf.video_shards import csv_rows, read_video_shard, write_video_shards


def write_video(path, num_frames: int, fps: int, width: int = 48, height: int = 32, keyframe_interval: int = 6):
    """An H.264 mp4 with B-frames and a keyframe every `keyframe_interval` frames: smooth gradients that move, and a
    blue level of its own in each frame."""
    y, x = np.mgrid[:height, :width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": str(keyframe_interval), "keyint_min": str(keyframe_interval), "bf": "2"}
        for index in range(num_frames):
            channels = [(x * 4 + index * 2) % 256, (y * 6 + index) % 256, np.full_like(x, index * 4 % 256)]
            image = np.stack(channels, axis=-1)
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def every_frame_decoded(path):
    """The reference: every frame decoded from the start; `shown(times)` picks the frame shown at each time (the last
    one presented at or before it, the first one before the first)."""
    with av.open(str(path)) as container:
        decoded = [(frame.time, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    starts, frames = np.array([time for time, _ in decoded]), np.stack([frame for _, frame in decoded])

    def shown(times: np.ndarray) -> np.ndarray:
        return frames[np.maximum(np.searchsorted(starts, times + video_io.TIME_TOLERANCE, side="right") - 1, 0)]

    return shown


def sample_specs(duration: float, fps: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        sample_clip_times(0, duration, fps, 8, 2, training=True, rng=rng)[0].ravel(),  # spread over the whole video
        sample_clip_times(duration * 0.4, duration * 0.6, fps, 2, 4, "consecutive", True, rng)[0].ravel(),  # a span
        np.array([duration * 0.9, 0.0, duration * 0.9, duration * 0.1, -0.5]),  # unsorted, repeated, before the start
        np.arange(0, duration, 1 / fps),  # every frame, on the frame boundaries
    ]


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "gradients.mp4", num_frames=60, fps=10)


@pytest.mark.parametrize("seek_gap", [video_io.SEEK_GAP_SECONDS, 0.5])  # one stretch, or a seek for most times
def test_planned_decoding_returns_the_frames_of_every_frame_decoded(synthetic_video, monkeypatch, seek_gap):
    monkeypatch.setattr(video_io, "SEEK_GAP_SECONDS", seek_gap)
    info, shown = probe_video(synthetic_video), every_frame_decoded(synthetic_video)
    for times in sample_specs(info.duration, info.fps):
        frames, _ = read_frames_at(synthetic_video, times)
        np.testing.assert_array_equal(frames, shown(times))
        sequential, _ = video_io._read_frames_sequential(str(synthetic_video), times)
        np.testing.assert_array_equal(frames, sequential)


def sent_to_the_decoder(path, times, monkeypatch) -> list[int]:
    """The frame indices (10 fps) of the packets that reading `times` sends to the decoder."""
    sent = []
    packets_to_decode = video_io._packets_to_decode

    def recording(packets, needed):
        mask = packets_to_decode(packets, needed)
        sent.extend(
            round(packet.pts * packet.time_base * 10) for packet, send in zip(packets, mask, strict=True) if send
        )
        return mask

    monkeypatch.setattr(video_io, "_packets_to_decode", recording)
    read_frames_at(path, times)
    return sorted(sent)


def test_only_the_groups_of_pictures_that_show_requested_frames_are_decoded(synthetic_video, monkeypatch):
    # keyframes every 6 frames: frames 20-22 need the group 18-23 up to the last of them in decode order
    sent = sent_to_the_decoder(synthetic_video, [2.25, 2.05, 2.15], monkeypatch)
    assert {20, 21, 22} <= set(sent) and min(sent) == 18 and max(sent) <= 23
    # one stretch from 0.25 s to 5.55 s: the groups 6-47 in between are read but not decoded
    sent = sent_to_the_decoder(synthetic_video, [5.55, 0.25], monkeypatch)
    assert {2, 55} <= set(sent) and all(pts < 6 or pts >= 54 for pts in sent)


@pytest.mark.parametrize("name", ["bikes.mp4", "flipping_a_pancake.mkv"])  # B-frames and 6 keyframes; Matroska
def test_planned_decoding_of_real_videos(real_data, name):
    path = real_data / "videos" / name
    info, shown = probe_video(path), every_frame_decoded(path)
    for times in sample_specs(info.duration, info.fps)[:3]:
        frames, _ = read_frames_at(path, times)
        np.testing.assert_array_equal(frames, shown(times))


def test_resizing_while_decoding_keeps_the_aspect_ratio_and_the_picture(synthetic_video):
    times = np.array([0.25, 3.3])
    full, _ = read_frames_at(synthetic_video, times)
    small, _ = read_frames_at(synthetic_video, times, short_side=16)
    assert small.shape == (2, 16, 24, 3)
    # area averaging: each output pixel is about the mean of a 2 x 2 block of the full frame (not exactly: the scaler
    # averages the YUV planes, with the colour at half resolution, before converting to RGB)
    blocks = full.reshape(2, 16, 2, 24, 2, 3).mean(axis=(2, 4))
    assert np.abs(small - blocks).mean() < 5
    with pytest.raises(ValueError, match="short_side"):
        read_frames_at(synthetic_video, times, short_side=0)


def test_streams_without_packet_times_are_decoded_frame_by_frame(synthetic_video, monkeypatch):
    times = np.array([3.3, 0.25, 3.3])
    planned, _ = read_frames_at(synthetic_video, times)
    monkeypatch.setattr(video_io, "_demux_from", lambda *args: (None, False))  # as for an AVI file with B-frames
    full, _ = read_frames_at(synthetic_video, times)
    np.testing.assert_array_equal(full, planned)
    assert read_frames_at(synthetic_video, times, short_side=16)[0].shape == (3, 16, 24, 3)


def test_corrupt_and_short_videos_raise_clear_errors(real_data, synthetic_video, tmp_path):
    with pytest.raises(VideoDecodingError, match="corrupt or unreadable: decoding failed after"):
        read_frames_at(real_data / "videos" / "corrupted.mp4", [0.5, 4.0])
    # a Matroska file cut short keeps its header's duration: the frames stop before the times asked for
    truncated = tmp_path / "truncated.mkv"
    with av.open(str(synthetic_video)) as source, av.open(str(truncated), "w") as target:
        target.add_stream_from_template(source.streams.video[0])
        target.mux([packet for packet in source.demux(video=0) if packet.size])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(VideoDecodingError, match="truncated or corrupt"):
        read_frames_at(truncated, [0.2, 5.5])


@pytest.fixture
def videos(tmp_path):
    first = write_video(tmp_path / "first.mp4", num_frames=30, fps=10)
    second = write_video(tmp_path / "second.mp4", num_frames=24, fps=8, width=40, height=24, keyframe_interval=8)
    return [
        {"video": str(first), "text": "a whole video", "start": None, "end": None},
        {"video": str(second), "text": "a span of it", "start": 0.5, "end": 2.25},
        {"video": str(second), "text": "another span", "start": 1.0, "end": 3.0},
    ]


@pytest.mark.parametrize("lossless", [True, False])
def test_shards_round_trip(videos, tmp_path, lossless):
    report = write_video_shards(videos, tmp_path / "shards", short_side=16, fps=4, samples_per_shard=2,
                                lossless=lossless)
    assert [path.name for path in report.shards] == ["shard-00000.tar", "shard-00001.tar"] == [
        path.name for path in report.written
    ]
    samples = [sample for shard in report.shards for sample in read_video_shard(shard)]
    assert [sample["key"] for sample in samples] == ["000000000", "000000001", "000000002"]
    for row, sample in zip(videos, samples, strict=True):
        info = probe_video(row["video"])
        start, end = (0.0, info.duration) if row["start"] is None else (row["start"], row["end"])
        assert (sample["text"], sample["source"], sample["source_start"], sample["source_end"]) == (
            row["text"], row["video"], start, end
        )
        assert sample["num_frames"] == round((end - start) * 4) and sample["fps"] == 4
        source, _ = read_frames_at(row["video"], start + (np.arange(sample["num_frames"]) + 0.5) / 4, short_side=16)
        if not lossless:  # 4:2:0 needs even sizes: 40 x 24 px resized to 27 x 16 px is stored at 26 x 16 px
            source = source[:, :, : source.shape[2] // 2 * 2]
        assert sample["frames"].shape == source.shape
        error = np.abs(sample["frames"].astype(int) - source)
        assert error.max() == 0 if lossless else error.mean() < 4  # levels of 255; colour at half size, 8 x 13 px


def test_streamed_shards_give_training_samples(videos, tmp_path, processor):
    report = write_video_shards(videos, tmp_path / "shards", short_side=16, fps=4, samples_per_shard=1)
    dataset = StreamingVideoTextDataset([str(path) for path in report.shards], processor, training=True)
    items = [item for item, _ in zip(dataset, range(3), strict=False)]
    assert sorted(item["text"] for item in items) == sorted(row["text"] for row in videos)
    size = processor.video_processor.crop_size
    video_processor = processor.video_processor
    for item in items:
        assert item["pixel_values_videos"].shape == (
            video_processor.num_clips, video_processor.frames_per_clip, 3, size["height"], size["width"]
        )
        assert item["clip_spans"].shape == (video_processor.num_clips, 2)
        assert item["skipped"] == [] and item["skipped_shards"] == []


def test_writing_resumes_keeps_complete_shards_and_rewrites_partial_ones(videos, tmp_path):
    output = tmp_path / "shards"
    first = write_video_shards(videos, output, short_side=16, fps=4, samples_per_shard=1)
    kept_bytes = first.shards[0].read_bytes()
    first.shards[0].write_bytes(b"kept as it is")  # a complete shard is not read again, nor rewritten
    # an interrupted run: shard 1 was being written, shard 2 not begun
    first.shards[1].unlink()
    first.shards[2].unlink()
    (output / "shard-00001.tar.partial").write_bytes(kept_bytes[:700])
    second = write_video_shards(videos, output, short_side=16, fps=4, samples_per_shard=1)
    assert second.kept == first.shards[:1] and second.written == first.shards[1:]
    assert first.shards[0].read_bytes() == b"kept as it is"
    assert sorted(path.name for path in output.iterdir()) == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    assert [sample["text"] for sample in read_video_shard(first.shards[1])] == [videos[1]["text"]]


def test_unreadable_rows_are_left_out_and_reported(videos, real_data, tmp_path):
    rows = [*videos[:1], {"video": str(real_data / "videos" / "corrupted.mp4"), "text": "broken"}]
    report = write_video_shards(rows, tmp_path / "shards", short_side=16, fps=4, samples_per_shard=2)
    (failed,) = report.failed
    assert failed.startswith(f"{rows[1]['video']}: ") and "corrupt" in failed
    with tarfile.open(report.shards[0]) as tar:
        assert tar.getnames() == ["000000000.mp4", "000000000.json"]
        assert json.load(tar.extractfile("000000000.json"))["text"] == "a whole video"


def test_csv_rows(tmp_path, caplog):
    (tmp_path / "rows.csv").write_text("video,start,end,text\na.mp4,1.5,3,first\nb.mp4,,,second\nc.mp4,0,1,  \n")
    rows = csv_rows(tmp_path / "rows.csv")
    assert rows == [
        {"video": str(tmp_path / "a.mp4"), "text": "first", "start": 1.5, "end": 3.0},
        {"video": str(tmp_path / "b.mp4"), "text": "second", "start": None, "end": None},
    ]
    assert f"{tmp_path / 'rows.csv'} row 2" in caplog.text
    (tmp_path / "bad.csv").write_text("path,caption\na.mp4,x\n")
    with pytest.raises(ValueError, match="has no \\['text', 'video'\\] column"):
        csv_rows(tmp_path / "bad.csv")


def test_the_script_writes_shards_from_a_csv_and_resumes(videos, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "write_video_shards_under_test", Path(__file__).resolve().parents[1] / "examples" / "write_video_shards.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    lines = [f"{row['video']},{row['start'] or ''},{row['end'] or ''},{row['text']}" for row in videos]
    (tmp_path / "rows.csv").write_text("\n".join(["video,start,end,text", *lines]) + "\n")
    arguments = ["--input", str(tmp_path / "rows.csv"), "--output_dir", str(tmp_path / "shards"), "--short_side", "16",
                 "--fps", "4", "--samples_per_shard", "2"]
    script.main(arguments)
    assert "2 shard(s) of 3 rows" in capsys.readouterr().out
    (tmp_path / "shards" / "shard-00001.tar").unlink()
    script.main(arguments)
    assert "1 written, 1 kept from an earlier run; 0 row(s) left out" in capsys.readouterr().out
    texts = [sample["text"] for shard in sorted((tmp_path / "shards").iterdir()) for sample in read_video_shard(shard)]
    assert texts == [row["text"] for row in videos]


def test_the_data_path_benchmark_measures_every_path_side_by_side(real_data, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import data_path

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("carphone_distorted.mp4", "corrupted.mp4"):
        (videos / name).symlink_to(real_data / "videos" / name)
    (table,) = data_path.main(["--quick", "--num_videos", "0", "--real_videos", str(videos), "--device", "cpu",
                               "--train_samples_per_second", "10", "--paths", *data_path.PATHS, "--num_workers", "0"])
    assert [row["path"] for row in table.rows] == ["before", "after", "resized", "shards"]
    assert all(row["clips / s per worker"] > 0 for row in table.rows)
    assert table.rows[3]["skipped videos"] == 0  # corrupted.mp4 was left out of the shards when they were written
    assert any("1 unreadable video(s) left out" in note for note in table.notes)
    assert video_io._read_frames_pyav.__name__ == "_read_frames_pyav"  # the baseline's decoding was put back
