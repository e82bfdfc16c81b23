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
"""The words of the synthetic world: its vocabulary (shapes, colours, actions and the phrases naming them), the
sentences that describe events, and the hard negative captions of a video (true subjects, false order or actions)."""

import math
from collections.abc import Sequence

import numpy as np


SHAPES = ("square", "circle", "triangle", "diamond", "cross", "ring")
COLOURS = {
    "red": (230, 45, 45),
    "green": (60, 200, 70),
    "blue": (60, 110, 250),
    "yellow": (245, 225, 50),
    "purple": (170, 80, 225),
    "orange": (250, 145, 35),
    "white": (245, 245, 245),
    "pink": (250, 140, 200),
}
ACTIONS = ("move", "grow", "shrink", "blink", "change_colour", "enter", "leave", "rotate")
MOVE_DIRECTIONS = ("left", "right", "up", "down")
SIDES = ("left", "right", "top", "bottom")
ROTATIONS = ("clockwise", "counterclockwise")
CAPTION_SEPARATOR = ", then "

SHAPE_NOUNS = {
    "square": ("square", "box", "block"),
    "circle": ("circle", "disc", "dot", "ball"),
    "triangle": ("triangle", "triangular shape"),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus sign"),
    "ring": ("ring", "hoop", "donut"),
}
MOVE_VERBS = ("moves", "slides", "goes", "travels", "drifts", "shifts")
MOVE_DIRECTION_PHRASES = {
    "left": ("left", "to the left", "towards the left"),
    "right": ("right", "to the right", "towards the right"),
    "up": ("up", "upwards", "towards the top"),
    "down": ("down", "downwards", "towards the bottom"),
}
VERTICAL_MOVE_PREDICATES = {"up": ("rises", "climbs", "floats up"), "down": ("falls", "sinks", "drops")}
PREDICATE_TEMPLATES = {
    "grow": ("grows", "grows bigger", "gets bigger", "becomes larger", "expands", "swells", "increases in size"),
    "shrink": ("shrinks", "gets smaller", "becomes smaller", "contracts", "decreases in size", "shrinks down"),
    "blink": ("blinks", "flashes", "flickers", "blinks on and off", "flashes on and off"),
    "change_colour": (
        "turns {target}",
        "changes colour to {target}",
        "becomes {target}",
        "changes from {colour} to {target}",
        "goes from {colour} to {target}",
    ),
    "enter": (
        "enters from the {side}",
        "comes in from the {side}",
        "appears from the {side}",
        "slides in from the {side}",
        "moves in from the {side}",
    ),
    "leave": (
        "leaves to the {side}",
        "exits to the {side}",
        "moves out to the {side}",
        "slides off to the {side}",
        "disappears off the {side} edge",
    ),
    "rotate": ("rotates {rotation}", "spins {rotation}", "turns {rotation}"),
}
ROTATION_PHRASES = {"clockwise": ("clockwise",), "counterclockwise": ("counterclockwise", "anticlockwise")}
# Speed adverbs are only used where they are true: "slowly" for long events, "quickly" for short ones.
SLOW_EVENT_SECONDS = 7.0
FAST_EVENT_SECONDS = 3.0
ADVERB_PROBABILITY = 0.35


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]



def _with_article(determiner: str, phrase: str) -> str:
    if determiner == "a" and phrase[0] in "aeiou":
        determiner = "an"
    return f"{determiner} {phrase}"


def _describe_subject(shape: str, colour: str, rng: np.random.Generator) -> str:
    return _with_article(_pick(rng, ("the", "a")), f"{colour} {_pick(rng, SHAPE_NOUNS[shape])}")


def _describe_predicate(
    action: str,
    direction: str | None,
    colour: str,
    target_colour: str | None,
    seconds: float,
    rng: np.random.Generator,
) -> str:
    """A verb phrase for an action, with wording picked by `rng`; `seconds` (the event's length) picks true adverbs."""
    if action == "move":
        if direction in VERTICAL_MOVE_PREDICATES and rng.random() < 0.3:
            predicate = _pick(rng, VERTICAL_MOVE_PREDICATES[direction])
        else:
            predicate = f"{_pick(rng, MOVE_VERBS)} {_pick(rng, MOVE_DIRECTION_PHRASES[direction])}"
    else:
        rotation = _pick(rng, ROTATION_PHRASES[direction]) if action == "rotate" else None
        predicate = _pick(rng, PREDICATE_TEMPLATES[action]).format(
            target=target_colour, colour=colour, side=direction, rotation=rotation
        )
    if action != "blink" and rng.random() < ADVERB_PROBABILITY:
        adverb = "slowly" if seconds >= SLOW_EVENT_SECONDS else "quickly" if seconds <= FAST_EVENT_SECONDS else None
        if adverb is not None:
            predicate = f"{adverb} {predicate}" if rng.random() < 0.5 else f"{predicate} {adverb}"
    return predicate



def _counterfactual_predicate(event, rng: np.random.Generator) -> str:
    """A predicate that describes something the object of `event` (an [`Event`]) visibly does not do: another
    direction or another action."""
    action, direction, target_colour = event.action, event.direction, event.target_colour
    if action == "move":
        direction = _pick(rng, [other for other in MOVE_DIRECTIONS if other != direction])
    elif action in ("enter", "leave"):
        if rng.random() < 0.5:
            action = "leave" if action == "enter" else "enter"
        else:
            direction = _pick(rng, [other for other in SIDES if other != direction])
    elif action in ("grow", "shrink"):
        action = "shrink" if action == "grow" else "grow"
    elif action == "rotate":
        direction = "counterclockwise" if direction == "clockwise" else "clockwise"
    else:
        if action == "blink":
            action = _pick(rng, ("grow", "shrink", "change_colour"))
        # A changing colour gets another target; a blink that becomes a colour change gets any other colour.
        if action == "change_colour":
            target_colour = _pick(rng, [name for name in COLOURS if name not in (event.colour, target_colour)])
    return _describe_predicate(action, direction, event.colour, target_colour, event.end - event.start, rng)


def _hard_negative_captions(video, num_hard_negatives: int, rng: np.random.Generator) -> list[str]:
    """The hard negative captions of `video` (a [`SyntheticVideo`]); see [`SyntheticWorld.captions`]."""
    sentences = [event.sentence for event in video.events]
    negatives: list[str] = []

    num_reorders = min(num_hard_negatives // 2, math.factorial(len(sentences)) - 1)
    while len(negatives) < num_reorders:
        reordered = CAPTION_SEPARATOR.join(sentences[k] for k in rng.permutation(len(sentences)))
        if reordered != video.caption and reordered not in negatives:
            negatives.append(reordered)

    for _ in range(20 * num_hard_negatives):
        if len(negatives) >= num_hard_negatives:
            break
        position = int(rng.integers(len(sentences)))
        event = video.events[position]
        edited = list(sentences)
        edited[position] = f"{event.subject} {_counterfactual_predicate(event, rng)}"
        edited_caption = CAPTION_SEPARATOR.join(edited)
        if edited_caption not in negatives:
            negatives.append(edited_caption)
    return negatives
