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
"""What leaves the synthetic world as files: videos as H.264 mp4 files (see `SyntheticWorld.export`) and a preview
picture of videos with their timestamped sentences."""

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .language import COLOURS


def write_mp4(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    """Encode uint8 `[N, H, W, 3]` RGB frames as H.264 (yuv420p) at `path`, frame `k` at time `k / fps`; `crf` is
    x264's constant rate factor (0 is lossless in luma; higher is smaller and lossier)."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(crf)}
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def draw_preview(world, video_ids: Sequence[str], num_frames: int = 10, scale: int = 2):
    """
    Draw a few videos of `world` (a [`SyntheticWorld`]) as rows of frames (sampled at the centres of `num_frames`
    equal parts of each video), each above a timeline of its events (one bar per event in the object's colour, ticks
    at the drawn frames) and the list of its timestamped sentences.

    Returns:
        `PIL.Image.Image`: the picture (RGB).
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    frame_side, gap, margin, line = world.size * scale, 6, 16, 17
    width = 2 * margin + num_frames * frame_side + (num_frames - 1) * gap
    videos = [world.video(video_id) for video_id in video_ids]
    # Per video: title, frames, time labels, timeline (one 9 px row per event), sentences, spacing.
    heights = [
        line + frame_side + line + (len(video.events) + 1) * 9 + 6 + len(video.events) * line + 20 for video in videos
    ]
    image = Image.new("RGB", (width, margin + sum(heights)), (24, 24, 28))
    draw = ImageDraw.Draw(image)

    top = margin
    for video, height in zip(videos, heights):
        title = f"{video.video_id}   {video.duration:.2f} s, {len(video.events)} events"
        draw.text((margin, top), title, fill=(235, 235, 235), font=font)
        times = (np.arange(num_frames) + 0.5) * video.duration / num_frames
        frames = video.render(times)
        strip_top, strip_width = top + line, width - 2 * margin
        for position, (time, frame) in enumerate(zip(times, frames)):
            left = margin + position * (frame_side + gap)
            image.paste(Image.fromarray(frame).resize((frame_side, frame_side), Image.NEAREST), (left, strip_top))
            draw.text((left + 2, strip_top + frame_side + 1), f"{time:.2f} s", fill=(180, 180, 180), font=font)

        # The frames are centred on their times, so a time maps to the same x on the strip and on the timeline.
        def x_of(seconds: float) -> float:
            return margin + seconds / video.duration * strip_width

        axis_top = strip_top + frame_side + line + 2
        axis_height = (len(video.events) + 1) * 9
        draw.rectangle([margin, axis_top, width - margin, axis_top + axis_height], outline=(90, 90, 90))
        for time in times:
            draw.line([x_of(time), axis_top, x_of(time), axis_top + axis_height], fill=(70, 70, 70))
        for row, event in enumerate(video.events):
            bar_top = axis_top + 5 + row * 9
            draw.rectangle([x_of(event.start), bar_top, x_of(event.end), bar_top + 5], fill=COLOURS[event.colour])
        for row, event in enumerate(video.events):
            text = f"[{event.start:5.2f} - {event.end:5.2f} s]  {event.sentence}"
            draw.text((margin, axis_top + axis_height + 6 + row * line), text, fill=COLOURS[event.colour], font=font)
        top += height
    return image
