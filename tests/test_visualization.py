"""plot_moments writes a PNG of the requested size, with the moments drawn and, from a real video, its frames."""

import struct
import sys

import numpy as np
import pytest


pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402

from locvtp_hf.visualization import GROUND_TRUTH_COLOR, SALIENCY_COLOR, plot_moments  # noqa: E402


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """`(width, height)` from the PNG header (signature, then the IHDR chunk)."""
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_SIGNATURE and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def count_color(image: np.ndarray, hex_color: str) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] * 255 - rgb).max(-1) < 3).sum())


def distinct_colors(image: np.ndarray) -> int:
    return len(np.unique((image[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))


def test_timeline_without_frames(tmp_path):
    path = plot_moments(
        tmp_path / "plots" / "query.png", duration=30.0, ground_truth=[[5.0, 10.0], [0.0, 5.0]],
        predictions=[{"start": 5.0, "end": 10.0, "score": 0.8}, {"start": 0.0, "end": 12.0, "score": 0.3}],
        query="the man bends over the machine", figsize=(8, 3), dpi=50,
    )
    assert path == tmp_path / "plots" / "query.png"
    assert png_size(path) == (400, 150)
    image = imread(path)
    assert image.shape[:2] == (150, 400)
    assert count_color(image, GROUND_TRUTH_COLOR) > 200  # the two ground-truth bars
    assert distinct_colors(image) < 2000  # drawing only: no photo
    only_predictions = imread(plot_moments(tmp_path / "p.png", 30.0, predictions=[[1.0, 2.0]], figsize=(8, 3), dpi=50))
    assert count_color(only_predictions, GROUND_TRUTH_COLOR) == 0
    # default size: 10 inches at 100 dpi, 0.1 + 0.3 per row + 0.6 inches tall
    assert png_size(plot_moments(tmp_path / "default.png", 30.0, ground_truth=[5.0, 10.0])) == (1000, 100)


def test_saliency_is_a_step_curve_under_the_timeline(tmp_path, monkeypatch):
    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: figures.append(figure) or save(
        figure, *args, **kwargs))
    saliency = {"times": [[0.0, 2.0], [2.0, 4.0], [4.0, 6.0]], "scores": [0.1, 0.9, 0.4]}
    path = plot_moments(tmp_path / "s.png", duration=6.0, ground_truth=[2.0, 4.0], saliency=saliency, dpi=50)
    timeline, curve_axis = figures[-1].axes
    assert curve_axis.get_ylabel() == "saliency" and timeline.get_xlabel() == ""
    (line,) = curve_axis.get_lines()
    assert line.get_color() == SALIENCY_COLOR
    assert line.get_xdata().tolist() == [0.0, 2.0, 2.0, 4.0, 4.0, 6.0]
    assert line.get_ydata().tolist() == [0.1, 0.1, 0.9, 0.9, 0.4, 0.4]
    assert curve_axis.get_xlim() == (0.0, 6.0)  # shared with the timeline
    # one inch taller than the timeline alone
    assert png_size(path) == (500, 100) and png_size(plot_moments(tmp_path / "t.png", 6.0, [2.0, 4.0], dpi=50)) == (
        500, 50)

    # a list of scores: clips that cut the video evenly; times of float32 durations may overshoot a little
    plot_moments(tmp_path / "l.png", duration=6.0, saliency=[0.2, 0.6], dpi=50)
    assert figures[-1].axes[-1].get_lines()[0].get_xdata().tolist() == [0.0, 3.0, 3.0, 6.0]
    plot_moments(tmp_path / "f.png", duration=6.0, saliency={"times": [[0.0, 6.0000002]], "scores": [1.0]}, dpi=50)
    for bad, message in [
        ({"times": [[0.0, 7.0]], "scores": [1.0]}, "outside the video"),
        ({"times": [[0.0, 2.0]], "scores": [1.0, 2.0]}, "one \\[start, end\\] time span per score"),
        ({"scores": [1.0]}, "got keys"),
        ([0.5, float("-inf")], "must be finite"),
    ]:
        with pytest.raises(ValueError, match=message):
            plot_moments(tmp_path / "bad.png", duration=6.0, saliency=bad)
    assert not (tmp_path / "bad.png").exists()


def test_timeline_with_frames_of_a_real_video(real_data, tmp_path):
    video = real_data / "videos" / "charades_example.mp4"
    path = plot_moments(
        tmp_path / "with_frames.png", duration=30.7, ground_truth=[3.0, 9.5], predictions=[[2.5, 10.0, 0.83]],
        query="a person opens the door", video=video, num_frames=4, figsize=(6, 4), dpi=40,
    )
    assert png_size(path) == (240, 160)
    image = imread(path)
    assert distinct_colors(image) > 2000  # the frames of a real video
    assert count_color(image, GROUND_TRUTH_COLOR) > 0


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="outside the video"):
        plot_moments(tmp_path / "x.png", duration=10.0, ground_truth=[5.0, 12.0])
    with pytest.raises(ValueError, match="`duration` must be a positive number"):
        plot_moments(tmp_path / "x.png", duration=0.0)
    with pytest.raises(ValueError, match=r"predictions has moments that end before they start"):
        plot_moments(tmp_path / "x.png", duration=10.0, predictions=[[4.0, 3.0]])
    assert not (tmp_path / "x.png").exists()


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "locvtp-hf\[plot\]"'):
        plot_moments(tmp_path / "x.png", duration=10.0)
