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
"""A procedural video-text world for testing and demonstrating LocVTP, where localization is learnable and measurable.

Each video shows a background and a sequence of events. An event is one object (a coloured shape) doing one action
over its own span `[start, end)` seconds, described by one generated sentence. An object is drawn only during its
event, so the frames inside a span differ from the rest of the video. Everything (videos, sentences, frames) is a
pure function of the world's seed and settings: video `i` of a split is drawn from
`np.random.default_rng([seed, split_index, i])`, whatever the number of videos, the process or the call order.

The world gives its data in the package's own schemas, as methods of [`SyntheticWorld`]: [`pretraining_pairs`] (the
rows of the pre-training readers), [`grounding_dataset`] (the grounding loaders' schema) and [`retrieval_dataset`]
(the retrieval readers' schema).
"""

import colorsys
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from ..grounding_datasets import LOADED_GROUNDING_FEATURES
from ..retrieval_datasets import RETRIEVAL_FEATURES
from ..video_io import TIME_TOLERANCE
from .export import write_mp4
from .language import (
    ACTIONS,
    CAPTION_SEPARATOR,
    COLOURS,
    MOVE_DIRECTIONS,
    ROTATIONS,
    SHAPES,
    SIDES,
    _describe_predicate,
    _describe_subject,
    _hard_negative_captions,
    _pick,
)


BACKGROUND_STYLES = ("plain", "gradient", "stripes", "checker")

# Circles and rings look the same at every angle, so a rotation would not be visible.
ROTATABLE_SHAPES = ("square", "triangle", "diamond", "cross")
# The (shape, colour) looks a world with `persistent_object_looks=n` draws its objects from: the first n, rotatable
# shapes first so that a world of few looks still shows every action.
OBJECT_LOOKS = tuple(
    (shape, colour)
    for shapes in (ROTATABLE_SHAPES, tuple(shape for shape in SHAPES if shape not in ROTATABLE_SHAPES))
    for colour in COLOURS
    for shape in shapes
)
# Each event gets a slot of the timeline at least this long, and covers 60-90% of it.
MIN_SLOT_SECONDS = 3.0
# Probability that an event starts before the previous one ends; the overlap is 10-30% of the shorter event.
OVERLAP_PROBABILITY = 0.3
# Every shape fits in a disc of this radius, in units of the object's half-size, at any angle.
SHAPE_REACH = 1.15
# The clips of the world's highlight annotations (QVHighlights' are 2 s in videos of 150 s): videos of 16-40 s and
# events of 1.8 s or more get 16-40 clips, at least one of them mostly covered by each event.
SALIENCY_CLIP_SECONDS = 1.0




@dataclass(frozen=True)
class Event:
    """
    One object doing one action during `[start, end)` seconds of a video. Outside that span the object is not drawn.

    Geometry is in fractions of the frame side (`(0, 0)` is the top-left corner, `y` points down), so the same event
    renders at any frame size. Position, half-size and angle move linearly from their start to their end values over
    the span.

    Attributes:
        shape (`str`): One of `SHAPES`.
        colour (`str`): One of `COLOURS` (the colour at `start`).
        action (`str`): One of `ACTIONS` (or `"still"` for a persistent object at rest between its events).
        start (`float`), end (`float`): The span in seconds, `0 <= start < end <= duration`.
        sentence (`str`): `f"{subject} {predicate}"`, e.g. `"the red square slides to the left"`.
        subject (`str`): The noun phrase naming the object, e.g. `"a red box"`.
        predicate (`str`): The verb phrase describing the action, e.g. `"moves left slowly"`.
        start_position (`tuple[float, float]`), end_position (`tuple[float, float]`): Centre `(x, y)`.
        start_scale (`float`), end_scale (`float`): Half-size of the object.
        start_angle (`float`), end_angle (`float`): Rotation in radians, clockwise on screen.
        direction (`str`, *optional*): `"move"`: one of `MOVE_DIRECTIONS`; `"enter"`: the side it comes in from and
            `"leave"`: the side it goes out to, one of `SIDES`; `"rotate"`: one of `ROTATIONS`; else `None`.
        target_colour (`str`, *optional*): The colour at `end` for `"change_colour"`; else `None`.
        blink_half_period (`float`, *optional*): For `"blink"`: seconds shown, then seconds hidden, alternately,
            starting shown at `start`.
    """

    shape: str
    colour: str
    action: str
    start: float
    end: float
    sentence: str
    subject: str
    predicate: str
    start_position: tuple[float, float]
    end_position: tuple[float, float]
    start_scale: float
    end_scale: float
    start_angle: float
    end_angle: float
    direction: str | None = None
    target_colour: str | None = None
    blink_half_period: float | None = None

    def is_shown_at(self, times: np.ndarray) -> np.ndarray:
        """Boolean `[N]`: whether the object is drawn at each of the `N` times (in its span and not blinked off)."""
        times = np.asarray(times, dtype=np.float64)
        shown = (times >= self.start) & (times < self.end)
        if self.action == "blink":
            shown &= np.floor((times - self.start) / self.blink_half_period) % 2 == 0
        return shown


@dataclass(frozen=True)
class Background:
    """
    A video's background: `colour` blended towards `second_colour` with a weight map given by `style`: `"plain"` (0
    everywhere), `"gradient"` (0 to 1 along `angle`), `"stripes"` (a sinusoid of wavelength `period` along `angle`)
    or `"checker"` (squares of side `period`, rotated by `angle`). `period` is a fraction of the frame side.
    """

    style: str
    colour: tuple[int, int, int]
    second_colour: tuple[int, int, int]
    angle: float
    period: float

    def render(self, size: int) -> np.ndarray:
        """Returns the background image, uint8 `[size, size, 3]`."""
        coords = (np.arange(size) + 0.5) / size
        x, y = coords[None, :], coords[:, None]
        along = x * math.cos(self.angle) + y * math.sin(self.angle)
        across = y * math.cos(self.angle) - x * math.sin(self.angle)
        if self.style == "plain":
            weight = np.zeros((size, size))
        elif self.style == "gradient":
            weight = (along - along.min()) / max(np.ptp(along), 1e-9)
        elif self.style == "stripes":
            weight = 0.5 + 0.5 * np.sin(2 * np.pi * along / self.period)
        else:
            weight = (np.floor(along / self.period) + np.floor(across / self.period)) % 2
        colour, second_colour = np.array(self.colour, np.float64), np.array(self.second_colour, np.float64)
        pixels = colour + np.broadcast_to(weight, (size, size))[..., None] * (second_colour - colour)
        return np.round(pixels).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticVideo:
    """
    One video of a [`SyntheticWorld`].

    Attributes:
        video_id (`str`): `f"{split}-{index:05d}"`, e.g. `"train-00012"`.
        split (`str`): One of `SyntheticWorld.SPLITS`.
        duration (`float`): `num_frames / fps` seconds.
        fps (`float`): Frame rate; frame `k` is shown during `[k / fps, (k + 1) / fps)`.
        size (`int`): Frame height and width in pixels.
        background ([`Background`]): The background.
        events (`tuple[Event, ...]`): The events, sorted by start time.
        rests (`tuple[Event, ...]`): Where an object that stays on screen between its events is drawn still (action
            `"still"`, no sentence); empty unless the world has a persistent object.
    """

    video_id: str
    split: str
    duration: float
    fps: float
    size: int
    background: Background
    events: tuple[Event, ...]
    rests: tuple[Event, ...] = ()

    @property
    def num_frames(self) -> int:
        return round(self.duration * self.fps)

    @property
    def frame_times(self) -> np.ndarray:
        """float64 `[num_frames]`: the time `k / fps` of every frame."""
        return np.arange(self.num_frames) / self.fps

    @property
    def caption(self) -> str:
        """All event sentences in temporal order, joined with `", then "`."""
        return CAPTION_SEPARATOR.join(event.sentence for event in self.events)

    def render(self, times: Sequence[float] | None = None) -> np.ndarray:
        """
        Draw the frames shown at the given times.

        As for a decoded file (see `locvtp_hf.video_io`), the frame for time `t` is frame `k = floor(t * fps)`, drawn
        at time `k / fps`; times before 0 get the first frame and times after the end get the last one. So
        `render(times)` equals decoding the exported mp4 at `times`, up to compression.

        Args:
            times (`Sequence[float]`, *optional*): `N` times in seconds; `None` for every frame of the video.

        Returns:
            `np.ndarray`: uint8 `[N, size, size, 3]` (RGB).
        """
        if times is None:
            frame_times = self.frame_times
        else:
            times = np.asarray(times, dtype=np.float64)
            if times.ndim != 1 or not np.all(np.isfinite(times)):
                raise ValueError(f"`times` must be a 1-D sequence of finite seconds, got {times!r}.")
            indices = np.clip(np.floor(times * self.fps + TIME_TOLERANCE), 0, self.num_frames - 1)
            frame_times = indices / self.fps
        frames = np.repeat(self.background.render(self.size)[None], len(frame_times), axis=0)
        for event in (*self.rests, *self.events):
            _draw_event(frames, frame_times, event)
        return frames


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which points `(u, v)`, in the object's frame (units of its half-size, `v` down), the shape covers."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "triangle":
        # Equilateral, pointing up, circumradius 1, centred on its centroid.
        return (v <= 0.5) & (math.sqrt(3) * u - v <= 1.0) & (-math.sqrt(3) * u - v <= 1.0)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.05
    if shape == "cross":
        return (np.minimum(np.abs(u), np.abs(v)) <= 0.3) & (np.maximum(np.abs(u), np.abs(v)) <= 1.0)
    if shape == "ring":
        return (u * u + v * v <= 1.0) & (u * u + v * v >= 0.55**2)
    raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


def _draw_event(frames: np.ndarray, frame_times: np.ndarray, event: Event) -> None:
    """Draw `event` in place on `frames` (uint8 `[N, S, S, 3]`) shown at `frame_times` (`[N]` seconds)."""
    indices = np.flatnonzero(event.is_shown_at(frame_times))
    if indices.size == 0:
        return
    size = frames.shape[1]
    progress = (frame_times[indices] - event.start) / (event.end - event.start)
    start_position, end_position = np.array(event.start_position), np.array(event.end_position)
    centre = (start_position + progress[:, None] * (end_position - start_position)) * size  # [n, 2] pixels
    half_size = (event.start_scale + progress * (event.end_scale - event.start_scale)) * size  # [n] pixels
    angle = event.start_angle + progress * (event.end_angle - event.start_angle)
    colour = np.broadcast_to(np.array(COLOURS[event.colour], np.float64), (indices.size, 3))
    if event.action == "change_colour":
        # Hold the first colour for 30% of the span, blend over 40%, hold the target colour for the last 30%.
        weight = np.clip((progress - 0.3) / 0.4, 0.0, 1.0)[:, None]
        colour = colour + weight * (np.array(COLOURS[event.target_colour], np.float64) - colour)

    # Only the box the object sweeps over these frames is computed.
    reach = SHAPE_REACH * half_size
    x0, y0 = np.maximum(np.floor((centre - reach[:, None]).min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil((centre + reach[:, None]).max(axis=0)).astype(int) + 1, size)
    if x0 >= x1 or y0 >= y1:
        return
    xs = np.arange(x0, x1)[None, None, :] + 0.5
    ys = np.arange(y0, y1)[None, :, None] + 0.5
    dx = (xs - centre[:, 0, None, None]) / half_size[:, None, None]
    dy = (ys - centre[:, 1, None, None]) / half_size[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    mask = _shape_mask(event.shape, cos * dx + sin * dy, cos * dy - sin * dx)  # [n, h, w]
    region = frames[indices, y0:y1, x0:x1]
    pixels = np.round(colour).astype(np.uint8)[:, None, None, :]
    frames[indices, y0:y1, x0:x1] = np.where(mask[..., None], pixels, region)



# ---------------------------------------------------------------------------------------------------------------------
# Generation


def _hsv_to_rgb(hsv: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(round(255 * channel)) for channel in colorsys.hsv_to_rgb(*hsv))


def _sample_background(rng: np.random.Generator) -> Background:
    """A dark, muted background, so that every object colour stands out against it."""
    style = _pick(rng, BACKGROUND_STYLES)
    hue, saturation, value = rng.uniform(0.0, 1.0), rng.uniform(0.25, 0.6), rng.uniform(0.15, 0.32)
    if style == "gradient":
        second_value = float(np.clip(value + rng.uniform(-0.1, 0.1), 0.08, 0.4))
        second = ((hue + rng.uniform(-0.15, 0.15)) % 1.0, saturation, second_value)
    else:
        second = (hue, saturation, value + rng.uniform(0.04, 0.08))
    return Background(
        style=style,
        colour=_hsv_to_rgb((hue, saturation, value)),
        second_colour=_hsv_to_rgb(second),
        angle=float(rng.uniform(0.0, 2 * np.pi)),
        period=float(rng.uniform(0.15, 0.35)),
    )


def _sample_spans(
    rng: np.random.Generator, duration: float, num_events: int, overlap_probability: float = OVERLAP_PROBABILITY
) -> list[tuple[float, float]]:
    """
    Event spans in increasing start order: the timeline is cut into one slot per event (each at least
    `MIN_SLOT_SECONDS`), each event covers 60-90% of its slot, and with probability `overlap_probability` an event
    starts early enough to overlap the previous one by 10-30% of the shorter of the two.
    """
    slots = MIN_SLOT_SECONDS + (duration - num_events * MIN_SLOT_SECONDS) * rng.dirichlet(np.ones(num_events))
    slot_starts = np.concatenate([[0.0], np.cumsum(slots)[:-1]])
    spans = []
    for slot_start, slot in zip(slot_starts, slots):
        length = slot * rng.uniform(0.6, 0.9)
        start = slot_start + rng.uniform(0.0, slot - length)
        spans.append([start, start + length])
    for previous, span in itertools.pairwise(spans):
        if rng.random() < overlap_probability:
            overlap = rng.uniform(0.1, 0.3) * min(previous[1] - previous[0], span[1] - span[0])
            span[0] = min(span[0], previous[1] - overlap)
    last_centisecond = math.floor(duration * 100) / 100
    return [(round(start, 2), min(round(end, 2), last_centisecond)) for start, end in spans]


def _rests_between(events: Sequence[Event], duration: float) -> tuple[Event, ...]:
    """A persistent object drawn still before its first event (at that event's start pose), between two events and
    after the last (at the pose the previous event ended in)."""
    rests = []
    gaps = [(0.0, events[0].start, events[0], "start")]
    gaps += [(first.end, second.start, first, "end") for first, second in itertools.pairwise(events)]
    gaps.append((events[-1].end, duration, events[-1], "end"))
    for start, end, event, pose in gaps:
        if end - start <= 0:
            continue
        position, scale, angle = (getattr(event, f"{pose}_{name}") for name in ("position", "scale", "angle"))
        rests.append(
            Event(
                shape=event.shape,
                colour=event.colour,
                action="still",
                start=start,
                end=end,
                sentence="",
                subject=event.subject,
                predicate="",
                start_position=position,
                end_position=position,
                start_scale=scale,
                end_scale=scale,
                start_angle=angle,
                end_angle=angle,
            )
        )
    return tuple(rests)


def _widen_span(
    rng: np.random.Generator, start: float, end: float, duration: float, coverage: float
) -> tuple[float, float]:
    """`[start, end]` widened to `(end - start) / coverage` seconds at a random shift that keeps it inside it, clipped
    to the video, in centiseconds."""
    length = min((end - start) / coverage, duration)
    new_start = start - rng.uniform(0.0, length - (end - start))
    new_start = min(max(new_start, 0.0), duration - length)
    last_centisecond = math.floor(duration * 100) / 100
    return round(new_start, 2), min(round(new_start + length, 2), last_centisecond)


def _sample_geometry(rng: np.random.Generator, action: str, direction: str | None) -> dict:
    """Positions, half-sizes and angles (fractions of the frame side, radians) of an event at its start and end."""
    base_scale = rng.uniform(0.10, 0.14)
    start_scale, end_scale = {"grow": (0.6, 1.5), "shrink": (1.5, 0.6)}.get(action, (1.0, 1.0))
    start_scale, end_scale = start_scale * base_scale, end_scale * base_scale
    reach = SHAPE_REACH * max(start_scale, end_scale)
    start = np.array([rng.uniform(reach, 1 - reach), rng.uniform(reach, 1 - reach)])
    end = start.copy()
    if action == "move":
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[direction]
        distance = rng.uniform(0.3, 0.5)
        start[axis] = rng.uniform(reach, 1 - reach - distance)
        end[axis] = start[axis] + distance
        if sign < 0:
            start[axis], end[axis] = end[axis], start[axis]
    elif action in ("enter", "leave"):
        axis, from_far_side = {"left": (0, False), "right": (0, True), "top": (1, False), "bottom": (1, True)}[
            direction
        ]
        # Outside: the centre is beyond the edge but a sliver of the object shows, so it is visible all span long.
        outside, inside = -0.4 * start_scale, rng.uniform(reach + 0.1, 0.6)
        if from_far_side:
            outside, inside = 1 - outside, 1 - inside
        start[axis], end[axis] = (outside, inside) if action == "enter" else (inside, outside)
    start_angle = end_angle = 0.0
    if action == "rotate":
        start_angle = rng.uniform(0.0, 2 * np.pi)
        end_angle = start_angle + (1 if direction == "clockwise" else -1) * rng.uniform(np.pi, 2 * np.pi)
    return dict(
        start_position=(float(start[0]), float(start[1])),
        end_position=(float(end[0]), float(end[1])),
        start_scale=float(start_scale),
        end_scale=float(end_scale),
        start_angle=float(start_angle),
        end_angle=float(end_angle),
    )


def _bounding_box(geometry: dict) -> np.ndarray:
    """`[x0, y0, x1, y1]` swept by an event over its span (a little larger for rotations)."""
    reach = SHAPE_REACH * max(geometry["start_scale"], geometry["end_scale"])
    positions = np.array([geometry["start_position"], geometry["end_position"]])
    return np.concatenate([positions.min(axis=0) - reach, positions.max(axis=0) + reach])


def _overlap_area(box: np.ndarray, other: np.ndarray) -> float:
    width = min(box[2], other[2]) - max(box[0], other[0])
    height = min(box[3], other[3]) - max(box[1], other[1])
    return max(width, 0.0) * max(height, 0.0)


def _sample_direction(rng: np.random.Generator, action: str) -> str | None:
    if action == "move":
        return _pick(rng, MOVE_DIRECTIONS)
    if action in ("enter", "leave"):
        return _pick(rng, SIDES)
    if action == "rotate":
        return _pick(rng, ROTATIONS)
    return None



class SyntheticWorld:
    """
    A procedural, seeded world of short videos of coloured shapes doing actions, each action described by a
    generated sentence with its time span, in three disjoint splits.

    Each video (`size` x `size` px at `fps`, a duration drawn in `[min_duration, max_duration]`) has a background
    (plain, gradient, stripes or checker, dark and muted) and `min_events` to `max_events` events, one distinct
    object (shape and colour) each. Events follow one another with gaps, and consecutive events overlap a little
    (10-30% of the shorter) with probability 0.3; objects that are on screen together are placed apart. See
    `docs/synthetic_world.md`.

    Video `i` of a split depends only on the seed, the split, `i`, `fps`, the duration range and the event-count
    range (`size` only sets the resolution), not on `num_train` / `num_validation` / `num_test`: a larger world
    extends a smaller one.

    Args:
        seed (`int`, *optional*, defaults to 0): Non-negative seed of the world.
        num_train (`int`, *optional*, defaults to 400): Number of training videos.
        num_validation (`int`, *optional*, defaults to 50): Number of validation videos.
        num_test (`int`, *optional*, defaults to 100): Number of test videos.
        size (`int`, *optional*, defaults to 64): Frame height and width in pixels (even, for H.264 export).
        fps (`float`, *optional*, defaults to 4.0): Frame rate.
        min_duration (`float`, *optional*, defaults to 16.0): Shortest video duration in seconds.
        max_duration (`float`, *optional*, defaults to 40.0): Longest video duration in seconds.
        min_events (`int`, *optional*, defaults to 2): Fewest events per video.
        max_events (`int`, *optional*, defaults to 5): Most events per video. `max_events * 3` seconds must fit in
            `min_duration`.
        num_hard_negatives (`int`, *optional*, defaults to 4): Hard negative captions per video in [`captions`].
        persistent_object (`bool`, *optional*, defaults to `False`): One object per video, on screen all the time,
            that performs every event of the video one after the other (distinct actions, no overlap; colour changes
            are left out so that every sentence names the object the same way) and rests, drawn still, between
            them. Then the object names no moment: only the action does, so grounding needs features that see
            actions. The default (`False`) gives each event its own object, drawn only during its event.
        persistent_object_looks (`int`, *optional*): With `persistent_object`, draw each video's object from only
            this many looks (shape and colour), the same for every video of the world, so that the object tells
            videos apart no better than that: with 1, every video shows the same object and only the actions (and the
            background, which no sentence names) differ, so matching sentences to videos needs features that see
            actions. `None`: any of the 48 looks.
        pretraining_span_coverage (`float`, *optional*, defaults to 1.0): The share of a pre-training span that
            its sentence's event(s) cover, in (0, 1]. Below 1, each span of [`pretraining_pairs`] is widened to
            `length / coverage` and shifted at random (it still contains the events, within the video), like
            narrated video whose speech is not aligned with what is shown: about `1 - coverage` of its clips show
            something else. The grounding queries keep the exact spans.
    """

    SPLITS = ("train", "validation", "test")
    # the clip length of the highlight annotations of `grounding_dataset` (its `relevant_clip_ids`)
    saliency_clip_seconds = SALIENCY_CLIP_SECONDS

    def __init__(
        self,
        seed: int = 0,
        num_train: int = 400,
        num_validation: int = 50,
        num_test: int = 100,
        size: int = 64,
        fps: float = 4.0,
        min_duration: float = 16.0,
        max_duration: float = 40.0,
        min_events: int = 2,
        max_events: int = 5,
        num_hard_negatives: int = 4,
        persistent_object: bool = False,
        persistent_object_looks: int | None = None,
        pretraining_span_coverage: float = 1.0,
    ):
        counts = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
        for name, value in {"seed": seed, **counts, "num_hard_negatives": num_hard_negatives}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
        if not isinstance(size, int) or size < 16 or size % 2:
            raise ValueError(f"`size` must be an even integer >= 16 (H.264 needs even sizes), got {size!r}.")
        if not fps > 0:
            raise ValueError(f"`fps` must be positive, got {fps!r}.")
        if not 0 < min_duration <= max_duration or math.floor(max_duration * fps) < math.ceil(min_duration * fps):
            raise ValueError(
                f"Need 0 < min_duration <= max_duration with a whole number of frames between them, got "
                f"{min_duration} and {max_duration} at {fps} fps."
            )
        if not 1 <= min_events <= max_events <= min(len(SHAPES), len(COLOURS)):
            raise ValueError(f"Need 1 <= min_events <= max_events <= 6, got {min_events} and {max_events}.")
        if max_events * MIN_SLOT_SECONDS > min_duration:
            raise ValueError(
                f"{max_events} events need at least {max_events * MIN_SLOT_SECONDS} s, more than min_duration "
                f"({min_duration} s): lower max_events or raise min_duration."
            )
        self.seed = seed
        self.num_videos = dict(zip(self.SPLITS, counts.values()))
        self.size = size
        self.fps = float(fps)
        self.min_duration, self.max_duration = float(min_duration), float(max_duration)
        self.min_events, self.max_events = min_events, max_events
        if persistent_object_looks is not None and (
            not persistent_object or not 1 <= persistent_object_looks <= len(OBJECT_LOOKS)
        ):
            raise ValueError(
                f"`persistent_object_looks` needs persistent_object=True and a value in [1, {len(OBJECT_LOOKS)}], got "
                f"{persistent_object_looks!r}."
            )
        if not 0 < pretraining_span_coverage <= 1:
            raise ValueError(f"`pretraining_span_coverage` must be in (0, 1], got {pretraining_span_coverage!r}.")
        self.num_hard_negatives = num_hard_negatives
        self.persistent_object = bool(persistent_object)
        self.persistent_object_looks = persistent_object_looks
        self.pretraining_span_coverage = float(pretraining_span_coverage)
        self._videos: dict[str, SyntheticVideo] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(seed={self.seed}, num_videos={self.num_videos}, size={self.size}, fps={self.fps}, "
            f"duration=[{self.min_duration}, {self.max_duration}], events=[{self.min_events}, {self.max_events}], "
            f"persistent_object={self.persistent_object}, persistent_object_looks={self.persistent_object_looks}, "
            f"pretraining_span_coverage={self.pretraining_span_coverage})"
        )

    # -----------------------------------------------------------------------------------------------------------------
    # Videos

    def videos(self, split: str) -> list[SyntheticVideo]:
        """The videos of a split, in index order; ids are `f"{split}-{index:05d}"`."""
        return [self._video(split, index) for index in range(self.num_videos[self._check_split(split)])]

    def video(self, video_id: str) -> SyntheticVideo:
        """The video with the given id, e.g. `"validation-00003"`."""
        split, _, index = video_id.rpartition("-")
        if split not in self.SPLITS or not index.isdigit() or int(index) >= self.num_videos[split]:
            raise KeyError(f"No video {video_id!r} in {self!r}.")
        return self._video(split, int(index))

    def render(self, video: SyntheticVideo | str, times: Sequence[float] | None = None) -> np.ndarray:
        """
        Draw the frames of a video (an object or an id) shown at `times` seconds; see [`SyntheticVideo.render`].

        Returns:
            `np.ndarray`: uint8 `[N, size, size, 3]`; with `times=None`, every frame `k / fps`, `k < duration * fps`.
        """
        if isinstance(video, str):
            video = self.video(video)
        return video.render(times)

    def _check_split(self, split: str) -> str:
        if split not in self.SPLITS:
            raise ValueError(f"Unknown split {split!r}; expected one of {self.SPLITS}.")
        return split

    def _rng(self, split: str, index: int, stream: int = 0) -> np.random.Generator:
        # Stream 0 draws the video, stream 1 its hard negatives, so either can change without moving the other.
        return np.random.default_rng([self.seed, self.SPLITS.index(split), index, stream])

    def _video(self, split: str, index: int) -> SyntheticVideo:
        video_id = f"{split}-{index:05d}"
        if video_id not in self._videos:
            self._videos[video_id] = self._generate_video(split, index, video_id)
        return self._videos[video_id]

    def _generate_video(self, split: str, index: int, video_id: str) -> SyntheticVideo:
        rng = self._rng(split, index)
        min_frames, max_frames = math.ceil(self.min_duration * self.fps), math.floor(self.max_duration * self.fps)
        num_frames = int(rng.integers(min_frames, max_frames + 1))
        duration = num_frames / self.fps
        background = _sample_background(rng)
        num_events = int(rng.integers(self.min_events, self.max_events + 1))
        if self.persistent_object:
            events = self._persistent_object_events(rng, _sample_spans(rng, duration, num_events, 0.0))
            rests = _rests_between(events, duration)
        else:
            events, rests = self._distinct_object_events(rng, _sample_spans(rng, duration, num_events)), ()
        return SyntheticVideo(
            video_id=video_id,
            split=split,
            duration=duration,
            fps=self.fps,
            size=self.size,
            background=background,
            events=tuple(events),
            rests=rests,
        )

    def _distinct_object_events(self, rng: np.random.Generator, spans: list[tuple[float, float]]) -> list[Event]:
        """The events of objects that each appear for one event only, placed apart from those on screen with them."""
        events: list[Event] = []
        boxes: list[np.ndarray] = []
        # `taken` holds every (shape, colour) look of the objects so far, target colours included, so that each
        # subject names exactly one object of the video.
        taken: set[tuple[str, str]] = set()
        for start, end in spans:
            shape = _pick(rng, [shape for shape in SHAPES if any((shape, colour) not in taken for colour in COLOURS)])
            colour = _pick(rng, [colour for colour in COLOURS if (shape, colour) not in taken])
            taken.add((shape, colour))
            target_colours = [name for name in COLOURS if (shape, name) not in taken]
            actions = [
                action
                for action in ACTIONS
                if (action != "rotate" or shape in ROTATABLE_SHAPES) and (action != "change_colour" or target_colours)
            ]
            action = _pick(rng, actions)
            direction = _sample_direction(rng, action)
            target_colour = None
            if action == "change_colour":
                target_colour = _pick(rng, target_colours)
                taken.add((shape, target_colour))

            # Place the object away from the objects on screen at the same time: keep the least overlapping try.
            concurrent = [box for box, other in zip(boxes, events) if other.end > start]
            geometry, box, best_overlap = None, None, math.inf
            for _ in range(16):
                candidate = _sample_geometry(rng, action, direction)
                candidate_box = _bounding_box(candidate)
                overlap = sum(_overlap_area(candidate_box, other) for other in concurrent)
                if overlap < best_overlap:
                    geometry, box, best_overlap = candidate, candidate_box, overlap
                if overlap == 0:
                    break

            events.append(
                self._described_event(rng, shape, colour, action, direction, target_colour, start, end, geometry)
            )
            boxes.append(box)
        return events

    def _persistent_object_events(self, rng: np.random.Generator, spans: list[tuple[float, float]]) -> list[Event]:
        """The events of one object doing a different action in each span."""
        if self.persistent_object_looks is None:
            shape = _pick(rng, SHAPES)
            colour = _pick(rng, list(COLOURS))
        else:
            shape, colour = _pick(rng, OBJECT_LOOKS[: self.persistent_object_looks])
        actions = [a for a in ACTIONS if a != "change_colour" and (a != "rotate" or shape in ROTATABLE_SHAPES)]
        events = []
        for start, end in spans:
            action = _pick(rng, actions)
            actions.remove(action)
            direction = _sample_direction(rng, action)
            events.append(self._described_event(rng, shape, colour, action, direction, None, start, end))
        return events

    def _described_event(
        self, rng: np.random.Generator, shape, colour, action, direction, target_colour, start, end, geometry=None
    ) -> Event:
        """The event, with a sentence drawn for it (and a blink period for a blink); its geometry is drawn after them
        when not given."""
        subject = _describe_subject(shape, colour, rng)
        predicate = _describe_predicate(action, direction, colour, target_colour, end - start, rng)
        blink_half_period = max(rng.uniform(0.5, 1.0), 1.0 / self.fps) if action == "blink" else None
        if geometry is None:
            geometry = _sample_geometry(rng, action, direction)
        return Event(
            shape=shape,
            colour=colour,
            action=action,
            start=start,
            end=end,
            sentence=f"{subject} {predicate}",
            subject=subject,
            predicate=predicate,
            direction=direction,
            target_colour=target_colour,
            blink_half_period=blink_half_period,
            **geometry,
        )

    # -----------------------------------------------------------------------------------------------------------------
    # Datasets

    def _pretraining_rows(self, videos: Sequence[SyntheticVideo]) -> list[dict]:
        rows = []
        for video in videos:
            video_rows = [
                dict(video=video.video_id, start=event.start, end=event.end, text=event.sentence)
                for event in video.events
            ]
            for first, second in itertools.pairwise(video.events):
                text = f"{first.sentence}{CAPTION_SEPARATOR}{second.sentence}"
                video_rows.append(dict(video=video.video_id, start=first.start, end=second.end, text=text))
            if self.pretraining_span_coverage < 1:
                split, _, index = video.video_id.rpartition("-")
                rng = self._rng(split, int(index), stream=2)
                for row in video_rows:
                    row["start"], row["end"] = _widen_span(
                        rng, row["start"], row["end"], video.duration, self.pretraining_span_coverage
                    )
            rows += video_rows
        return rows

    def pretraining_pairs(self, split: str) -> datasets.Dataset:
        """
        Text-span pairs for pre-training, like HowTo100M's ASR segments: per video, each event's sentence with its
        span, then each two consecutive events' sentences joined with `", then "` (as in captions), spanning from the
        first start to the second end. With `pretraining_span_coverage < 1` the spans are widened and shifted (see the
        class doc).

        The rows are those the pre-training readers of `locvtp_hf.data` give (`videofolder_rows`, `howto100m_rows`),
        ready for `VideoTextPairDataset(rows, processor, load_video=world.render, video_fps=world.fps)`: `video` is
        the video id, which [`render`] turns into frames.

        Returns:
            `datasets.Dataset` with columns `video` (string, the video id), `start` and `end` (float64 seconds),
            `text` (string).
        """
        features = datasets.Features(
            video=datasets.Value("string"),
            start=datasets.Value("float64"),
            end=datasets.Value("float64"),
            text=datasets.Value("string"),
        )
        return datasets.Dataset.from_list(self._pretraining_rows(self.videos(split)), features=features)

    def grounding_queries(self, split: str) -> datasets.Dataset:
        """
        Temporal grounding queries: one per event, its sentence and its span, flat (one exact span per row), as the
        head-free probe `locvtp_hf.evaluation.localization_evaluation` reads them. [`grounding_dataset`] gives the
        same queries in the grounding loaders' schema.

        Returns:
            `datasets.Dataset` with columns `video_id` (string), `duration` (float64 seconds), `query` (string),
            `start` and `end` (float64 seconds).
        """
        rows = [
            dict(
                video_id=video.video_id,
                duration=video.duration,
                query=event.sentence,
                start=event.start,
                end=event.end,
            )
            for video in self.videos(split)
            for event in video.events
        ]
        features = datasets.Features(
            video_id=datasets.Value("string"),
            duration=datasets.Value("float64"),
            query=datasets.Value("string"),
            start=datasets.Value("float64"),
            end=datasets.Value("float64"),
        )
        return datasets.Dataset.from_list(rows, features=features)

    def grounding_dataset(self, split: str) -> datasets.Dataset:
        """
        The grounding queries of a split (one per event, with its exact span) in the schema of the grounding loaders
        (`LOADED_GROUNDING_FEATURES` of `locvtp_hf.grounding_datasets`), which grounding fine-tuning and evaluation
        read: `query_id` is `"{video_id}#{i}"` for the `i`-th event of the video, `moments` its one span, and
        highlight annotations in QVHighlights' format from one "annotator" (see [`saliency_annotation`]).

        Returns:
            `datasets.Dataset` with columns `query_id`, `video_id` (string), `duration` (float64 seconds), `query`
            (string), `moments` (`[[start, end]]`, float64 seconds), `relevant_clip_ids` (int64 indices of
            `saliency_clip_seconds` clips) and `saliency_scores` (per relevant clip, `[score]`, 0-4).
        """
        rows = [
            dict(
                query_id=f"{video.video_id}#{index}",
                video_id=video.video_id,
                duration=video.duration,
                query=event.sentence,
                moments=[[event.start, event.end]],
                **self.saliency_annotation(video, event),
            )
            for video in self.videos(split)
            for index, event in enumerate(video.events)
        ]
        return datasets.Dataset.from_list(rows, features=LOADED_GROUNDING_FEATURES)

    def saliency_annotation(self, video: SyntheticVideo, event: Event) -> dict[str, list]:
        """
        An event's highlight annotation in QVHighlights' format, over the video's `int(duration /
        saliency_clip_seconds)` clips `[k c, (k + 1) c)` (`c = saliency_clip_seconds`, 1 s; the last partial clip has
        none, as in QVHighlights): the clips the event's span covers in part are relevant, and one "annotator" scores
        each `floor(4 * coverage + 1/2)`, `coverage` the share of the clip inside the span. So a clip the event fills
        scores 4 (VeryGood), and a clip is Fair (>= 2) for the annotator when the event covers at least 3/8 of it.

        Returns:
            `dict` with `relevant_clip_ids` (`list[int]`, increasing) and `saliency_scores` (`list[[float]]`).
        """
        clip = self.saliency_clip_seconds
        starts = np.arange(int(video.duration / clip)) * clip
        coverage = (np.minimum(starts + clip, event.end) - np.maximum(starts, event.start)).clip(0) / clip
        relevant = np.flatnonzero(coverage > 0)
        return {
            "relevant_clip_ids": relevant.tolist(),
            "saliency_scores": [[float(math.floor(4 * coverage[index] + 0.5))] for index in relevant],
        }

    def captions(self, split: str) -> datasets.Dataset:
        """
        Whole-video captions for retrieval, with hard negatives.

        The caption is every event's sentence in temporal order joined with `", then "`. The `num_hard_negatives`
        hard negatives name the same objects with the same subjects: up to half of them put the sentences in another
        order, the others change what one object does (another direction, grow <-> shrink, enter <-> leave, another
        target colour, clockwise <-> counterclockwise, or another action for a blink). Fewer are returned only when
        that many distinct ones do not exist.

        Returns:
            `datasets.Dataset` with columns `video_id` (string), `caption` (string), `hard_negatives` (list of
            strings).
        """
        rows = [
            dict(video_id=video.video_id, caption=video.caption, hard_negatives=self._hard_negatives(video))
            for video in self.videos(split)
        ]
        features = datasets.Features(
            video_id=datasets.Value("string"),
            caption=datasets.Value("string"),
            hard_negatives=datasets.List(datasets.Value("string")),
        )
        return datasets.Dataset.from_list(rows, features=features)

    def retrieval_dataset(self, split: str) -> datasets.Dataset:
        """
        The video-level captions of a split (see [`captions`]) in the schema of the retrieval readers
        (`RETRIEVAL_FEATURES` of `locvtp_hf.retrieval_datasets`): one row per video with its one caption. `video` is
        the video id, which [`render`] turns into frames (at `fps`).

        Returns:
            `datasets.Dataset` with columns `video_id`, `video` (string, both the video id) and `captions` (list of
            one string).
        """
        rows = [
            {"video_id": video.video_id, "video": video.video_id, "captions": [video.caption]}
            for video in self.videos(split)
        ]
        return datasets.Dataset.from_list(rows, features=RETRIEVAL_FEATURES)

    def _hard_negatives(self, video: SyntheticVideo) -> list[str]:
        split, _, index = video.video_id.rpartition("-")
        return _hard_negative_captions(video, self.num_hard_negatives, self._rng(split, int(index), stream=1))
    # -----------------------------------------------------------------------------------------------------------------
    # Export

    def export(self, folder: str | Path, split: str, num_videos: int | None = None, crf: int = 18) -> Path:
        """
        Write videos of a split as files in the `videofolder` layout.

        Writes `<folder>/<split>/<video_id>.mp4` (H.264, yuv420p, at the world's fps, frame `k` at `k / fps`) for the
        first `num_videos` videos (all by default), and `<folder>/<split>/metadata.jsonl` (overwritten) with one line
        per pre-training pair of those videos, in the order of [`pretraining_pairs`]:
        `{"file_name": "<video_id>.mp4", "text": ..., "start": ..., "end": ...}`.

        Args:
            folder (`str` or `Path`): Root folder; created if needed.
            split (`str`): One of `SPLITS`.
            num_videos (`int`, *optional*): Export only the first `num_videos` videos of the split.
            crf (`int`, *optional*, defaults to 18): x264 constant rate factor (0 is lossless in luma; higher is
                smaller and lossier).

        Returns:
            `Path`: the split folder `<folder>/<split>`.
        """
        videos = self.videos(split)
        if num_videos is not None:
            if num_videos < 0:
                raise ValueError(f"`num_videos` must be non-negative, got {num_videos}.")
            videos = videos[:num_videos]
        split_folder = Path(folder) / split
        split_folder.mkdir(parents=True, exist_ok=True)
        for video in videos:
            write_mp4(split_folder / f"{video.video_id}.mp4", video.render(), self.fps, crf)
        with open(split_folder / "metadata.jsonl", "w") as metadata:
            for row in self._pretraining_rows(videos):
                line = dict(file_name=f"{row['video']}.mp4", text=row["text"], start=row["start"], end=row["end"])
                metadata.write(json.dumps(line) + "\n")
        return split_folder

