"""Tests of the procedural video-text world (`locvtp_hf.synthetic`): determinism, splits, spans, visibility of
events, hard negatives, the package schemas it emits, and the mp4 / `metadata.jsonl` export read back by `video_io`
and `LocVTPVideoProcessor`."""

import dataclasses
import json
import re

import numpy as np
import pytest

from locvtp_hf.grounding_datasets import GROUNDING_FEATURES, LOADED_GROUNDING_FEATURES
from locvtp_hf.grounding_metrics import highlight_metrics, saliency_labels
from locvtp_hf.retrieval_datasets import RETRIEVAL_FEATURES
from locvtp_hf.synthetic import CAPTION_SEPARATOR, SyntheticWorld, draw_preview
from locvtp_hf.synthetic.__main__ import main
from locvtp_hf.video_io import probe_video, read_frames_at
from locvtp_hf.video_processing_locvtp import LocVTPVideoProcessor, sample_clip_times


TINY = dict(
    num_train=4, num_validation=2, num_test=3, size=32, fps=2.0, min_duration=10.0, max_duration=16.0, max_events=3
)
# A pixel belongs to an object when it differs from the background by more than this in some channel.
OBJECT_THRESHOLD = 40


def tiny_world(seed: int = 0, **kwargs) -> SyntheticWorld:
    return SyntheticWorld(seed=seed, **{**TINY, **kwargs})


def world_contents(world: SyntheticWorld, splits=SyntheticWorld.SPLITS) -> dict:
    contents = {}
    for split in splits:
        contents[split] = dict(
            videos=world.videos(split),
            pairs=world.pretraining_pairs(split).to_list(),
            queries=world.grounding_queries(split).to_list(),
            captions=world.captions(split).to_list(),
        )
    return contents


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return tiny_world()


@pytest.fixture
def restore_global_rng():
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def test_same_seed_gives_the_same_world_in_any_call_order(restore_global_rng):
    np.random.seed(1)
    first = tiny_world(seed=7)
    first_contents = world_contents(first)
    first_frames = {video.video_id: first.render(video) for split in first.SPLITS for video in first.videos(split)}

    np.random.seed(2)  # the global RNG must not matter
    second = tiny_world(seed=7)
    second_frames = {video.video_id: second.render(video.video_id) for video in reversed(second.videos("test"))}
    second_contents = world_contents(second, splits=tuple(reversed(SyntheticWorld.SPLITS)))
    for split in ("train", "validation"):
        second_frames |= {video.video_id: second.render(video) for video in second.videos(split)}

    assert second_contents == first_contents
    assert second_frames.keys() == first_frames.keys()
    for video_id, frames in first_frames.items():
        np.testing.assert_array_equal(second_frames[video_id], frames)


def test_different_seeds_differ(world):
    other = tiny_world(seed=1)
    assert other.captions("train")["caption"] != world.captions("train")["caption"]
    assert not np.array_equal(other.render("train-00000", [0.0, 1.0]), world.render("train-00000", [0.0, 1.0]))


def test_a_larger_world_extends_a_smaller_one(world):
    larger = tiny_world(num_train=6)
    assert larger.videos("train")[:4] == world.videos("train")


def test_splits_are_disjoint_and_sized_as_configured(world):
    ids = {split: [video.video_id for video in world.videos(split)] for split in world.SPLITS}
    assert {split: len(split_ids) for split, split_ids in ids.items()} == {"train": 4, "validation": 2, "test": 3}
    all_ids = [video_id for split_ids in ids.values() for video_id in split_ids]
    assert len(set(all_ids)) == len(all_ids)
    for split, split_ids in ids.items():
        assert all(re.fullmatch(rf"{split}-\d{{5}}", video_id) for video_id in split_ids)
        assert all(world.video(video_id).split == split for video_id in split_ids)
    for split in world.SPLITS:
        assert set(world.pretraining_pairs(split)["video"]) == set(ids[split])
        assert set(world.grounding_queries(split)["video_id"]) == set(ids[split])
        assert world.captions(split)["video_id"] == ids[split]
    with pytest.raises(KeyError):
        world.video("train-00004")
    with pytest.raises(ValueError, match="Unknown split"):
        world.videos("dev")


def test_durations_events_and_moments_are_within_bounds(world):
    for split in world.SPLITS:
        for video in world.videos(split):
            assert 10.0 <= video.duration <= 16.0
            assert video.num_frames == round(video.duration * 2.0)
            assert 2 <= len(video.events) <= 3
            assert [event.start for event in video.events] == sorted(event.start for event in video.events)
            assert len({(event.shape, event.colour) for event in video.events}) == len(video.events)
            for event in video.events:
                assert 0 <= event.start < event.end <= video.duration
                assert event.sentence == f"{event.subject} {event.predicate}"

        durations = {video.video_id: video.duration for video in world.videos(split)}
        pairs, queries = world.pretraining_pairs(split), world.grounding_queries(split)
        for dataset, video_column in ((pairs, "video"), (queries, "video_id")):
            for row in dataset:
                assert 0 <= row["start"] < row["end"] <= durations[row[video_column]]
        queries = world.grounding_queries(split)
        assert len(queries) == sum(len(video.events) for video in world.videos(split))
        assert queries["duration"] == [durations[video_id] for video_id in queries["video_id"]]


def test_pretraining_pairs_are_single_events_then_consecutive_pairs(world):
    video = world.videos("train")[0]
    rows = [row for row in world.pretraining_pairs("train") if row["video"] == video.video_id]
    events = video.events
    expected = [(event.start, event.end, event.sentence) for event in events]
    expected += [
        (first.start, second.end, f"{first.sentence}, then {second.sentence}") for first, second in zip(events, events[1:])
    ]
    assert [(row["start"], row["end"], row["text"]) for row in rows] == expected


def test_the_world_emits_the_package_schemas(world):
    """Pre-training rows as the `locvtp_hf.data` readers give them, and grounding and retrieval datasets in the
    schemas of their loaders, with the same queries, moments and captions as the world's own tables."""
    for split in world.SPLITS:
        assert world.pretraining_pairs(split).column_names == ["video", "start", "end", "text"]

        queries, grounding = world.grounding_queries(split), world.grounding_dataset(split)
        assert grounding.features == LOADED_GROUNDING_FEATURES
        assert list(grounding.features)[: len(GROUNDING_FEATURES)] == list(GROUNDING_FEATURES)
        assert grounding["query_id"] == [
            f"{video.video_id}#{index}" for video in world.videos(split) for index in range(len(video.events))
        ]
        assert [(row["video_id"], row["duration"], row["query"], row["moments"]) for row in grounding] == [
            (row["video_id"], row["duration"], row["query"], [[row["start"], row["end"]]]) for row in queries
        ]

        captions, retrieval = world.captions(split), world.retrieval_dataset(split)
        assert retrieval.features == RETRIEVAL_FEATURES
        assert retrieval["video_id"] == retrieval["video"] == captions["video_id"]
        assert retrieval["captions"] == [[caption] for caption in captions["caption"]]


def test_highlight_annotations_score_how_much_of_each_clip_the_event_covers(world):
    """QVHighlights' format over 1-second clips, one annotator: relevant where the event covers part of the clip,
    scored floor(4 * coverage + 1/2); the last partial second is no clip."""
    assert world.saliency_clip_seconds == 1.0
    video = dataclasses.replace(world.videos("train")[0], duration=6.5)
    event = dataclasses.replace(video.events[0], start=1.3, end=3.625)
    # clip 1 [1, 2): 0.7 -> 3.3 -> 3; clip 2: 1 -> 4; clip 3 [3, 4): 0.625 -> 3 (half up: Python's round gives 2)
    assert world.saliency_annotation(video, event) == {
        "relevant_clip_ids": [1, 2, 3], "saliency_scores": [[3.0], [4.0], [3.0]]
    }
    # a sliver is relevant with score 0 (as QVHighlights' "very bad"); the partial clip [6, 6.5) is left out
    event = dataclasses.replace(event, start=3.9, end=6.5)
    assert world.saliency_annotation(video, event) == {
        "relevant_clip_ids": [3, 4, 5], "saliency_scores": [[0.0], [4.0], [4.0]]
    }

    queries = world.grounding_dataset("test")
    annotations = [world.saliency_annotation(video, event) for video in world.videos("test") for event in video.events]
    assert queries["relevant_clip_ids"] == [annotation["relevant_clip_ids"] for annotation in annotations]
    assert queries["saliency_scores"] == [annotation["saliency_scores"] for annotation in annotations]
    # a predictor that knows the scores is perfect at every level (each event fills most of a clip: VeryGood)
    perfect = [saliency_labels(query, world.saliency_clip_seconds)[:, 0].tolist() for query in queries]
    results = highlight_metrics(perfect, queries, clip_seconds=world.saliency_clip_seconds)
    assert results == {name: 1.0 for name in results} and len(results) == 6
    reversed_ranking = highlight_metrics([[-score for score in scores] for scores in perfect], queries,
                                         clip_seconds=world.saliency_clip_seconds)
    assert reversed_ranking["HL-mAP@Fair"] < 0.5 and reversed_ranking["HL-Hit1@Fair"] == 0.0


def test_render_picks_the_frame_shown_at_each_time(world):
    video = world.videos("validation")[1]
    frames = world.render(video)
    assert frames.shape == (video.num_frames, 32, 32, 3) and frames.dtype == np.uint8
    # Frame k is shown during [k / fps, (k + 1) / fps); times outside the video get the first or last frame.
    times = [-1.0, 0.0, 0.49, 0.5, 3.2, video.duration - 0.01, video.duration + 5.0]
    expected = [0, 0, 0, 1, 6, video.num_frames - 1, video.num_frames - 1]
    np.testing.assert_array_equal(world.render(video.video_id, times), frames[expected])


def test_events_are_visible_in_their_span_only(world):
    for split in world.SPLITS:
        for video in world.videos(split):
            background = video.background.render(video.size).astype(int)
            frames = video.render().astype(int)
            times = video.frame_times
            active = np.stack([(times >= event.start) & (times < event.end) for event in video.events])  # [K, N]
            idle = ~active.any(axis=0)
            np.testing.assert_array_equal(frames[idle], np.broadcast_to(background, frames[idle].shape))

            for event, inside in zip(video.events, active):
                alone = dataclasses.replace(video, events=(event,)).render().astype(int)
                object_pixels = np.abs(alone - background).max(axis=-1) > OBJECT_THRESHOLD  # [N, size, size]
                assert not object_pixels[~inside].any(), (video.video_id, event.sentence)
                shown = object_pixels[inside].any(axis=(1, 2)).mean()
                if event.action == "blink":  # shown, then hidden, about half of the time each
                    assert 0.25 <= shown < 1.0, (video.video_id, event.sentence, shown)
                else:
                    assert shown == 1.0, (video.video_id, event.sentence, shown)
                # Where no other event is on screen, the full video shows exactly this object on the background.
                exclusive = inside & (active.sum(axis=0) == 1)
                np.testing.assert_array_equal(frames[exclusive], alone[exclusive])


def test_captions_and_hard_negatives(world):
    for split in world.SPLITS:
        for video, row in zip(world.videos(split), world.captions(split)):
            assert row["caption"] == CAPTION_SEPARATOR.join(event.sentence for event in video.events)
            negatives = row["hard_negatives"]
            assert len(negatives) == world.num_hard_negatives
            assert len(set(negatives)) == len(negatives) and row["caption"] not in negatives
            subjects = sorted(event.subject for event in video.events)
            num_reordered = 0
            for negative in negatives:
                parts = negative.split(CAPTION_SEPARATOR)
                # Each part names one of the video's objects, each object once.
                part_subjects = [next(s for s in subjects if part.startswith(s + " ")) for part in parts]
                assert sorted(part_subjects) == subjects, negative
                num_reordered += part_subjects != [event.subject for event in video.events]
            # Some negatives only reorder the events, the others change what one object does.
            assert 1 <= num_reordered < len(negatives)


def test_export_round_trip(world, tmp_path):
    folder = world.export(tmp_path / "synthetic", "validation", num_videos=1)
    assert folder == tmp_path / "synthetic" / "validation"
    assert sorted(path.name for path in folder.iterdir()) == ["metadata.jsonl", "validation-00000.mp4"]

    video = world.video("validation-00000")
    metadata = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    pairs = [row for row in world.pretraining_pairs("validation") if row["video"] == video.video_id]
    assert metadata == [
        {"file_name": f"{row['video']}.mp4", "text": row["text"], "start": row["start"], "end": row["end"]}
        for row in pairs
    ]

    path = folder / "validation-00000.mp4"
    info = probe_video(path)
    assert (info.fps, info.duration, info.num_frames) == (video.fps, video.duration, video.num_frames)
    times = np.linspace(0.0, video.duration - 0.1, 12)
    decoded, _ = read_frames_at(path, times)
    difference = np.abs(decoded.astype(int) - world.render(video, times).astype(int)).mean(axis=(1, 2, 3))
    assert difference.max() < 5, difference  # H.264 at crf 18 with 4:2:0 chroma

    # The processor reads the span of a metadata row from the file as it does from the rendered frames.
    processor = LocVTPVideoProcessor(
        num_clips=4, frames_per_clip=2, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
        do_rescale=False, do_normalize=False,
    )
    span = (metadata[-1]["start"], metadata[-1]["end"])
    from_file = processor(str(path), spans=[span], return_tensors="np")
    from_frames = processor(world.render(video), spans=[span], video_fps=video.fps, return_tensors="np")
    np.testing.assert_allclose(from_file["clip_spans"], from_frames["clip_spans"])
    assert np.abs(from_file["pixel_values_videos"] - from_frames["pixel_values_videos"]).mean() < 5
    clip_times, _ = sample_clip_times(*span, video.fps, num_clips=4, frames_per_clip=2)
    rendered_clips = world.render(video, clip_times.reshape(-1)).transpose(0, 3, 1, 2).reshape(4, 2, 3, 32, 32)
    assert np.abs(from_file["pixel_values_videos"][0] - rendered_clips).mean() < 5


def test_invalid_settings():
    with pytest.raises(ValueError, match="even"):
        SyntheticWorld(size=33)
    with pytest.raises(ValueError, match="min_duration"):
        SyntheticWorld(min_duration=8.0, max_events=5)
    with pytest.raises(ValueError, match="num_train"):
        SyntheticWorld(num_train=-1)
    with pytest.raises(ValueError, match="finite"):
        tiny_world().render("train-00000", [float("nan")])


def test_preview_picture(world, tmp_path):
    image = draw_preview(world, ["train-00000", "test-00002"], num_frames=5)
    assert image.mode == "RGB" and image.width == 2 * 16 + 5 * 64 + 4 * 6
    main(["--preview", str(tmp_path / "preview.png"), "--num-videos", "1"])
    assert (tmp_path / "preview.png").stat().st_size > 0


def test_a_persistent_object_performs_every_event_and_stays_on_screen():
    world = tiny_world(persistent_object=True)
    for split in world.SPLITS:
        for video in world.videos(split):
            # one object, a different action per event, no overlap, named the same way (no colour change)
            assert len({(event.shape, event.colour) for event in video.events}) == 1
            actions = [event.action for event in video.events]
            assert len(set(actions)) == len(actions) and "change_colour" not in actions
            assert all(first.end <= second.start for first, second in zip(video.events, video.events[1:]))
            # the object is on screen in every frame: during its events, and still between them
            background = video.background.render(video.size).astype(int)
            frames = video.render().astype(int)
            showing = np.abs(frames - background).max(axis=-1) > OBJECT_THRESHOLD
            times = video.frame_times
            blinking = np.zeros_like(times, dtype=bool)
            for event in video.events:
                if event.action == "blink":
                    blinking |= (times >= event.start) & (times < event.end)
            assert showing[~blinking].any(axis=(1, 2)).all(), video.video_id
            covered = np.zeros_like(times, dtype=bool)
            for part in (*video.events, *video.rests):
                covered |= (times >= part.start) & (times < part.end)
            assert covered.all()
            # at rest it does not move
            for rest in video.rests:
                still = (times >= rest.start) & (times < rest.end)
                if still.sum() > 1:
                    assert (frames[still] == frames[still][:1]).all(), video.video_id
    # the easy world is unchanged by the option's existence
    assert tiny_world().videos("train")[0].rests == ()
    # with one look, every video shows the same object
    one_look = tiny_world(persistent_object=True, persistent_object_looks=1)
    looks = {(event.shape, event.colour) for split in world.SPLITS for video in one_look.videos(split)
             for event in video.events}  # fmt: skip
    assert looks == {("square", "red")}
    with pytest.raises(ValueError, match="persistent_object_looks"):
        tiny_world(persistent_object_looks=1)


def test_pretraining_spans_widened_to_the_coverage_still_contain_their_events():
    exact = tiny_world(persistent_object=True)
    widened = tiny_world(persistent_object=True, pretraining_span_coverage=0.5)
    assert exact.videos("train") == widened.videos("train")  # the videos are the same, only the spans differ
    assert widened.grounding_queries("train").to_list() == exact.grounding_queries("train").to_list()
    durations = {video.video_id: video.duration for video in exact.videos("train")}
    coverages = []
    for original, row in zip(exact.pretraining_pairs("train"), widened.pretraining_pairs("train")):
        assert row["text"] == original["text"] and row["video"] == original["video"]
        assert 0 <= row["start"] <= original["start"] + 0.005 and original["end"] - 0.005 <= row["end"]
        assert row["end"] <= durations[row["video"]]
        coverages.append((original["end"] - original["start"]) / (row["end"] - row["start"]))
    # half of each span, unless the video is too short to widen it that much
    assert np.median(coverages) == pytest.approx(0.5, abs=0.05) and min(coverages) >= 0.49
    assert widened.pretraining_pairs("train").to_list() == tiny_world(
        persistent_object=True, pretraining_span_coverage=0.5
    ).pretraining_pairs("train").to_list()
    with pytest.raises(ValueError, match="pretraining_span_coverage"):
        tiny_world(pretraining_span_coverage=0.0)
