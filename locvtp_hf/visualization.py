"""Pictures of temporal grounding results: a video's timeline with its ground-truth and predicted moments, and the
per-clip saliency under it."""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .grounding_metrics import as_ranked_moments, as_reference_moments
from .moment_geometry import temporal_iou
from .video_io import read_frames_at


GROUND_TRUTH_COLOR = "#2e9e44"
PREDICTION_COLORMAP = "Blues"
SALIENCY_COLOR = "#d2691e"
# Seconds by which a clip time may overshoot the video.
TIME_TOLERANCE = 1e-3


def plot_moments(
    output_path: str | os.PathLike,
    duration: float,
    ground_truth=None,
    predictions=None,
    query: str | None = None,
    video: str | os.PathLike | None = None,
    num_frames: int = 6,
    max_predictions: int = 5,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    video_backend: str = "pyav",
    saliency=None,
) -> Path:
    """
    Draw a video's timeline with its ground-truth and predicted moments, optionally a strip of frames above it and
    the per-clip saliency under it, and save it as a PNG.

    The timeline has one row per ground-truth moment (green) and one per predicted moment (blue, darker for a higher
    score; best first, labelled with its score when there is one and its IoU with the ground truth when there is
    one). Frames are decoded at the centres of `num_frames` equal parts of the video and their times are marked on
    the timeline.

    Args:
        output_path (`str` or `os.PathLike`): Where to write the PNG; parent folders are created.
        duration (`float`): Length of the video in seconds (the timeline's extent).
        ground_truth (*optional*): One `[start, end]` moment or a list of them, in seconds.
        predictions (*optional*): Predicted moments best first: rows `[start, end]` / `[start, end, score]` or dicts
            `{"start", "end", "score"}` as `post_process_grounding` returns for one query (re-ranked by score when
            scores are given).
        query (`str`, *optional*): The sentence, used as the title.
        video (`str` or `os.PathLike`, *optional*): The video file, to show frames; without it only the timeline
            is drawn.
        num_frames (`int`, *optional*, defaults to 6): Frames shown when `video` is given.
        max_predictions (`int`, *optional*, defaults to 5): Predicted moments drawn (the best ones).
        figsize (`tuple[float, float]`, *optional*): Figure size in inches; the PNG is `figsize * dpi` pixels. By
            default 10 inches wide and as tall as the rows need.
        dpi (`int`, *optional*, defaults to 100): Pixels per inch.
        video_backend (`str`, *optional*, defaults to `"pyav"`): Decoder for the frames (`"pyav"` or `"torchcodec"`).
        saliency (*optional*): The saliency of each clip for the query, drawn as a step curve (each clip's score over
            its time span) under the timeline: a dict `{"times": [[start, end], ...], "scores": [...]}` as
            `post_process_grounding(..., return_saliency=True)` and the pipeline return for one query, or a list of
            scores of clips that cut the video evenly.

    Returns:
        `Path`: `output_path`.

    Raises:
        `ImportError`: matplotlib is not installed (`pip install "locvtp-hf[plot]"`).
        `ValueError`: a non-positive duration, malformed moments or saliency, or times outside `[0, duration]`.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            'plot_moments needs matplotlib, an optional dependency: pip install "locvtp-hf[plot]" (or matplotlib).'
        ) from error

    if not duration > 0:
        raise ValueError(f"`duration` must be a positive number of seconds, got {duration}.")
    if num_frames < 1 or max_predictions < 0:
        raise ValueError(f"`num_frames` must be >= 1 and `max_predictions` >= 0, got {num_frames}, {max_predictions}.")
    reference = None if ground_truth is None else as_reference_moments(ground_truth, "ground_truth")
    predicted, scores = as_ranked_moments(predictions if predictions is not None else [], "predictions")
    predicted, scores = predicted[:max_predictions], None if scores is None else scores[:max_predictions]
    for name, moments in (("ground_truth", reference), ("predictions", predicted)):
        if moments is not None and len(moments) and (moments.min() < 0 or moments.max() > duration):
            raise ValueError(f"{name} has moments outside the video [0, {duration}] s: {moments.tolist()}.")
    saliency_curve = None if saliency is None else _saliency_curve(saliency, duration)

    rows = _timeline_rows(reference, predicted, scores)
    frame_times = (np.arange(num_frames) + 0.5) * duration / num_frames
    frames = read_frames_at(video, frame_times, backend=video_backend)[0] if video is not None else None
    timeline_height = 0.3 * max(len(rows), 1) + 0.6
    frames_height = 1.6 if frames is not None else 0.0
    saliency_height = 1.0 if saliency_curve is not None else 0.0
    if figsize is None:
        figsize = (10.0, (0.4 if query else 0.1) + frames_height + timeline_height + saliency_height)

    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    heights = [height for height in (frames_height, timeline_height, saliency_height) if height]
    grid = figure.add_gridspec(len(heights), num_frames if frames is not None else 1, height_ratios=heights)
    if frames is not None:
        for index, (frame, time) in enumerate(zip(frames, frame_times)):
            axis = figure.add_subplot(grid[0, index])
            axis.imshow(frame)
            axis.set_axis_off()
            axis.set_title(f"{time:.1f} s", fontsize=8)
    timeline = figure.add_subplot(grid[1 if frames is not None else 0, :])
    colormap = colormaps[PREDICTION_COLORMAP]
    for row_index, (label, moment, color_value, annotation) in enumerate(rows):
        color = GROUND_TRUTH_COLOR if color_value is None else colormap(0.35 + 0.6 * color_value)
        start, end = float(moment[0]), float(moment[1])
        timeline.barh(row_index, end - start, left=start, height=0.7, color=color, edgecolor="black", linewidth=0.5)
        if annotation:
            # beside the bar on the side with more room, or inside it when it spans nearly the whole video
            if max(start, duration - end) < 0.2 * duration:
                x, alignment = start + 0.005 * duration, "left"
            elif duration - end >= start:
                x, alignment = end + 0.005 * duration, "left"
            else:
                x, alignment = start - 0.005 * duration, "right"
            timeline.text(
                x, row_index, annotation, va="center", ha=alignment, fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0, "pad": 1},
            )
    timeline.set_yticks(range(len(rows)), [row[0] for row in rows], fontsize=8)
    timeline.set_ylim(len(rows) - 0.5 if rows else 0.5, -0.5)
    timeline.set_xlim(0, duration)
    timeline.tick_params(axis="x", labelsize=8)
    if frames is not None:
        for time in frame_times:
            timeline.axvline(time, color="grey", linestyle=":", linewidth=0.8)
    time_axis = timeline
    if saliency_curve is not None:
        time_axis = figure.add_subplot(grid[-1, :], sharex=timeline)
        times, values = saliency_curve
        time_axis.plot(times, values, color=SALIENCY_COLOR, linewidth=1.2, label="saliency")
        time_axis.fill_between(times, values, values.min(), color=SALIENCY_COLOR, alpha=0.2, linewidth=0)
        time_axis.set_ylabel("saliency", fontsize=8)
        time_axis.tick_params(labelsize=8)
        timeline.tick_params(axis="x", labelbottom=False)
    time_axis.set_xlabel("time (s)", fontsize=8)
    if query:
        figure.suptitle(query, fontsize=10)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output_path, dpi=dpi, format="png")
    return output_path


def _saliency_curve(saliency, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The step curve of per-clip saliency: `(times, values)` with two points per clip, at its start and its end."""
    if isinstance(saliency, dict):
        if set(saliency) != {"times", "scores"}:
            raise ValueError(
                f'saliency must be {{"times": [[start, end], ...], "scores": [...]}}, got keys {sorted(saliency)}.'
            )
        spans = np.asarray(saliency["times"], dtype=np.float64)
        values = np.asarray(saliency["scores"], dtype=np.float64)
    else:
        values = np.asarray(saliency, dtype=np.float64)
        edges = np.linspace(0.0, duration, len(values) + 1) if values.ndim == 1 else np.zeros(0)
        spans = np.stack([edges[:-1], edges[1:]], axis=-1) if len(edges) else np.zeros((0, 2))
    if values.ndim != 1 or not len(values) or spans.shape != (len(values), 2):
        raise ValueError(
            f"saliency needs one [start, end] time span per score and at least one clip, got {spans.shape[0]} spans "
            f"and {values.shape} scores."
        )
    if not np.isfinite(values).all():
        raise ValueError("saliency scores must be finite (give the real clips only).")
    # the times of post-processing went through float32 durations: allow their rounding
    if (spans[:, 1] < spans[:, 0]).any() or spans.min() < -TIME_TOLERANCE or spans.max() > duration + TIME_TOLERANCE:
        raise ValueError(f"saliency has clip times outside the video [0, {duration}] s or ending before they start.")
    return spans.clip(0, duration).reshape(-1), values.repeat(2)


def _timeline_rows(reference, predicted, scores) -> list[tuple[str, Sequence[float], float | None, str]]:
    """`(label, moment, colour value in [0, 1] or None for ground truth, annotation)` for each timeline row."""
    rows = []
    if reference is not None:
        for index, moment in enumerate(reference):
            label = "ground truth" if len(reference) == 1 else f"ground truth {index + 1}"
            rows.append((label, moment, None, ""))
    ious = temporal_iou(predicted, reference).amax(dim=1) if reference is not None and len(predicted) else None
    if scores is not None and len(scores):
        low, high = float(scores.min()), float(scores.max())
        color_values = [(float(score) - low) / (high - low) if high > low else 1.0 for score in scores]
    else:
        color_values = [1.0 - rank / max(len(predicted), 1) for rank in range(len(predicted))]
    for rank, moment in enumerate(predicted):
        notes = []
        if scores is not None:
            notes.append(f"score {float(scores[rank]):.2f}")
        if ious is not None:
            notes.append(f"IoU {float(ious[rank]):.2f}")
        rows.append((f"prediction {rank + 1}", moment, color_values[rank], ", ".join(notes)))
    return rows
