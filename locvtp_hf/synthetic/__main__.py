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
"""The command line of the synthetic world: `python -m locvtp_hf.synthetic --help` (preview picture, export to mp4
files)."""

import argparse
from collections.abc import Sequence

from .export import draw_preview
from .world import SyntheticWorld


def main(argv: Sequence[str] | None = None) -> None:
    """Draw a preview picture and/or export a split of the default world with the given seed; `argv` defaults to
    the command line's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m locvtp_hf.synthetic",
        description="Preview or export the synthetic video-text world (default settings, the given seed).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", choices=SyntheticWorld.SPLITS)
    parser.add_argument("--num-videos", type=int, help="videos to draw (default 3) or to export (default: all)")
    parser.add_argument("--preview", metavar="PNG", help="draw the first videos of --split with their captions")
    parser.add_argument("--export", metavar="FOLDER", help="write mp4 files and metadata.jsonl of --split")
    args = parser.parse_args(argv)
    if not args.preview and not args.export:
        parser.error("give --preview PNG and/or --export FOLDER")
    world = SyntheticWorld(seed=args.seed)
    if args.preview:
        video_ids = [video.video_id for video in world.videos(args.split)[: args.num_videos or 3]]
        draw_preview(world, video_ids).save(args.preview)
        print(f"wrote {args.preview}")
    if args.export:
        print(f"wrote {world.export(args.export, args.split, args.num_videos)}")



if __name__ == "__main__":
    main()
