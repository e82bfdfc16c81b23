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
"""
The synthetic world: a procedural video-text world for testing and demonstrating LocVTP, where localization is
learnable and measurable (see `docs/synthetic_world.md`).

- `world`: the events, videos and their rendering, and [`SyntheticWorld`], which gives its data in the package's own
  schemas: `pretraining_pairs` (the rows of the pre-training readers of `locvtp_hf.data`), `grounding_dataset` (the
  `LOADED_GROUNDING_FEATURES` of `locvtp_hf.grounding_datasets`, with highlight annotations) and `retrieval_dataset`
  (the `RETRIEVAL_FEATURES` of `locvtp_hf.retrieval_datasets`).
- `language`: the vocabulary, the sentences that describe events, captions and their hard negatives.
- `export`: mp4 files and the preview picture.

Run `python -m locvtp_hf.synthetic --help` for the command line (preview picture, export to mp4 files).
"""

from .export import draw_preview, write_mp4
from .language import ACTIONS, CAPTION_SEPARATOR, COLOURS, SHAPES
from .world import OBJECT_LOOKS, Background, Event, SyntheticVideo, SyntheticWorld


__all__ = [
    "ACTIONS",
    "Background",
    "CAPTION_SEPARATOR",
    "COLOURS",
    "Event",
    "OBJECT_LOOKS",
    "SHAPES",
    "SyntheticVideo",
    "SyntheticWorld",
    "draw_preview",
    "write_mp4",
]
