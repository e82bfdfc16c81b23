"""`examples/extract_features.py` and `examples/finetune_grounding.py` on short synthetic-world videos, run in this
process: the features written equal `get_clip_features` on the same clips, a second run skips the done videos (also
with the checkpoint under another path), an output of a re-trained checkpoint is refused, an interrupted HDF5 run
completes, fine-tuning after a short `pretrain.py` run learns on the synthetic world, and
fine-tuning runs on a features folder with a benchmark annotation file (and pushes to a fake Hub), and a resumed
fine-tuning ends with the same weights as an uninterrupted one."""

import importlib.util
import json
import logging
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from datasets import Dataset
from testing_utils import CROSS_PROCESS_TOLERANCE, TEXT_CONFIGS, VISION_CONFIGS
from huggingface_hub import HfApi, ModelCard, constants
from safetensors import safe_open
from safetensors.torch import load_file
from test_hub import FakeHub

from locvtp_hf import LocVTPConfig, LocVTPForTemporalGrounding, LocVTPModel, LocVTPProcessor, LocVTPVideoProcessor
from locvtp_hf.grounding_datasets import LOADED_GROUNDING_FEATURES
from locvtp_hf.grounding_features import ClipFeatureStore, model_fingerprint
from locvtp_hf.grounding_finetuning import (
    GroundingCollator,
    GroundingFeatureDataset,
    GroundingVideoDataset,
    evaluate_grounding_model,
    train_grounding_model,
)
from locvtp_hf.grounding_metrics import HIGHLIGHT_SALIENCY_THRESHOLDS, QVHIGHLIGHTS_CLIP_SECONDS
from locvtp_hf.synthetic import SyntheticWorld
from locvtp_hf.training import word_tokenizer


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IMAGE_SIZE = 32


def load_script(name: str):
    """An example script as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(monkeypatch, module, *arguments: str) -> None:
    monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *map(str, arguments)])
    try:
        module.main()
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # the run's process state stays with the run


def save_checkpoint(folder: Path, sentences: list[str], seed: int = 0) -> Path:
    """A tiny pre-training checkpoint (LocVTPModel + processor) whose word-level tokenizer covers `sentences`, with
    the weights that `seed` draws."""
    tokenizer = word_tokenizer(sentences)
    text_config = {**TEXT_CONFIGS["bert"], "vocab_size": len(tokenizer)}
    config = LocVTPConfig(
        vision_config=dict(VISION_CONFIGS["vit"]), text_config=text_config, projection_dim=16, frames_per_clip=2
    )
    torch.manual_seed(seed)
    LocVTPModel(config).save_pretrained(folder)
    video_processor = LocVTPVideoProcessor(
        frames_per_clip=2, size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        grounding_clip_seconds=2.0,
    )
    LocVTPProcessor(video_processor, tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=3, num_train=3, num_test=0, size=IMAGE_SIZE, min_duration=8.0, max_duration=14.0,
                          max_events=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, world) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"), world.grounding_dataset("train")["query"])


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory, world) -> Path:
    """Three short synthetic mp4s, one file that is not a video and one mp4 cut in half (an interrupted copy)."""
    folder = world.export(tmp_path_factory.mktemp("videos"), "train")
    (folder / "metadata.jsonl").unlink()
    (folder / "broken.mp4").write_bytes(b"this is not a video" * 100)
    whole = (folder / "train-00000.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    return folder


@pytest.fixture(scope="module")
def extract():
    return load_script("extract_features")


def expected_features(checkpoint: Path, video: Path) -> tuple[torch.Tensor, torch.Tensor, float]:
    """What `get_clip_features` gives for the clips the processor cuts `video` into."""
    model = LocVTPForTemporalGrounding.from_pretrained(checkpoint).eval()
    inputs = LocVTPProcessor.from_pretrained(checkpoint)(videos=[str(video)], task="grounding", return_tensors="pt")
    with torch.no_grad():
        features = model.get_clip_features(inputs["pixel_values_videos"], inputs["clip_mask"])
    return features[0], inputs["clip_spans"][0], float(inputs["video_durations"][0])


def test_extraction_writes_the_grounding_features_and_a_rerun_skips_the_done_videos(
    tmp_path, monkeypatch, capsys, extract, checkpoint, video_folder
):
    output = tmp_path / "features"
    run_script(monkeypatch, extract, "--videos", video_folder, "--model_name_or_path", checkpoint, "--output", output,
               "--batch_size", 2, "--num_workers", 0)
    assert "3 extracted, 0 already done, 2 failed (of 5 videos)" in capsys.readouterr().out
    files = sorted(output.glob("*.safetensors"))
    assert [path.stem for path in files] == ["train-00000", "train-00001", "train-00002"]
    broken, truncated = json.loads((output / "failed_videos.json").read_text())
    assert broken["video_id"] == "broken" and "broken.mp4" in broken["error"]
    assert truncated["video_id"] == "truncated" and "truncated.mp4" in truncated["error"]

    for path in files:
        features, clip_spans, duration = expected_features(checkpoint, video_folder / f"{path.stem}.mp4")
        with safe_open(str(path), framework="pt") as file:
            torch.testing.assert_close(file.get_tensor("features"), features, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(file.get_tensor("clip_spans"), clip_spans)
            metadata = file.metadata()
        assert float(metadata["duration"]) == pytest.approx(duration)
        # the checkpoint by its folder's name only: the files may be shared, this machine's paths are not
        assert float(metadata["video_fps"]) == 4.0 and metadata["checkpoint"] == checkpoint.name
        assert len(metadata["model_sha256"]) == 64 and str(checkpoint.parent) not in json.dumps(metadata)
        assert float(metadata["clip_seconds"]) == pytest.approx(duration / len(features))
        assert float(metadata["grounding_clip_seconds"]) == 2.0 and int(metadata["feature_dim"]) == 16

    assert str(checkpoint.parent) not in (output / "features_info.json").read_text()

    # the same checkpoint spelled another way (relative, trailing slash) is the same model: the run resumes
    written = {path.name: path.stat().st_mtime_ns for path in files}
    monkeypatch.chdir(checkpoint.parent)
    run_script(monkeypatch, extract, "--videos", video_folder, "--model_name_or_path", f"{checkpoint.name}/",
               "--output", output, "--num_workers", 0)
    assert "0 extracted, 3 already done, 2 failed (of 5 videos)" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in output.glob("*.safetensors")} == written
    assert not list(output.glob(".*partial"))

    with pytest.raises(ValueError, match="grounding_clip_seconds 2.0 -> 1.0"):
        run_script(monkeypatch, extract, "--videos", video_folder, "--model_name_or_path", checkpoint, "--output",
                   output, "--grounding_clip_seconds", 1.0)


def test_model_fingerprint_names_the_encoder_not_its_path_class_or_task_head(tmp_path, checkpoint):
    pretrained = LocVTPModel.from_pretrained(checkpoint)
    grounding = LocVTPForTemporalGrounding.from_pretrained(checkpoint, grounding_hidden_size=8)  # a new head
    grounding.save_pretrained(tmp_path / "grounding")
    reloaded = LocVTPForTemporalGrounding.from_pretrained(tmp_path / "grounding")

    fingerprint = model_fingerprint(pretrained)
    assert model_fingerprint(grounding) == model_fingerprint(reloaded) == fingerprint
    with torch.no_grad():
        pretrained.visual_projection.weight[0, 0] += 1e-3
    assert model_fingerprint(pretrained) != fingerprint
    assert model_fingerprint(LocVTPModel.from_pretrained(checkpoint, vision_pooling="mean")) != fingerprint


@pytest.mark.parametrize("layout", ["features", "features.h5"])
def test_extraction_refuses_a_store_written_by_a_checkpoint_retrained_in_the_same_folder(
    tmp_path, monkeypatch, capsys, extract, checkpoint, video_folder, world, layout
):
    if layout.endswith(".h5"):
        pytest.importorskip("h5py")
    retrained, output = tmp_path / "run", tmp_path / layout
    shutil.copytree(checkpoint, retrained)
    arguments = ["--videos", video_folder / "train-00001.mp4", "--model_name_or_path", retrained, "--output", output,
                 "--num_workers", 0]
    run_script(monkeypatch, extract, *arguments)
    assert "1 extracted, 0 already done, 0 failed (of 1 videos)" in capsys.readouterr().out

    save_checkpoint(retrained, world.grounding_dataset("train")["query"], seed=1)
    with pytest.raises(ValueError, match=r"was written by a different model \(checkpoint 'run', model_sha256 "):
        run_script(monkeypatch, extract, *arguments)
    store = ClipFeatureStore(output)  # untouched
    assert list(store) == ["train-00001"] and store.settings["checkpoint"] == "run"
    store.close()


def test_an_interrupted_hdf5_extraction_completes_on_the_next_run(
    tmp_path, monkeypatch, capsys, extract, checkpoint, video_folder
):
    h5py = pytest.importorskip("h5py")
    output = tmp_path / "features.h5"
    arguments = ["--videos", video_folder, "--model_name_or_path", checkpoint, "--output", output, "--num_workers", 0,
                 "--batch_size", 1]
    save = extract.save_clip_features
    saved = []

    def save_then_stop(path, video, settings):
        if saved:
            raise KeyboardInterrupt
        saved.append(save(path, video, settings))

    monkeypatch.setattr(extract, "save_clip_features", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_script(monkeypatch, extract, *arguments)
    assert not output.exists() and [path.stem for path in saved] == ["train-00000"]

    monkeypatch.setattr(extract, "save_clip_features", save)
    run_script(monkeypatch, extract, *arguments)
    assert "2 extracted, 1 already done, 2 failed (of 5 videos)" in capsys.readouterr().out
    assert not output.with_name("features.h5.parts").exists()
    with h5py.File(output, "r") as file:
        assert sorted(file) == ["train-00000", "train-00001", "train-00002"]
        assert file.attrs["checkpoint"] == checkpoint.name and len(file.attrs["model_sha256"]) == 64
        features, clip_spans, duration = expected_features(checkpoint, video_folder / "train-00001.mp4")
        torch.testing.assert_close(torch.from_numpy(file["train-00001"][:]), features, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(file["train-00001"].attrs["clip_spans"]), clip_spans)
        assert float(file["train-00001"].attrs["duration"]) == pytest.approx(duration)
    store = ClipFeatureStore(output)
    assert store.find("train-00002.avi") == "train-00002" and store.settings["feature_dim"] == 16
    store.close()


def test_a_new_head_for_activitynet_captions_has_64_positions(caplog):
    finetune = load_script("finetune_grounding")
    arguments = finetune.GroundingArguments

    with caplog.at_level(logging.INFO):
        fields = finetune.head_fields(arguments(dataset="activitynet_captions"))
    assert fields["grounding_num_positions"] == 64 and fields["grounding_pooling_counts"] == [15, 8, 8]
    assert "--dataset activitynet_captions: the new head has 64 positions" in caplog.text
    # the flag wins; other benchmarks keep 16 positions; a grounding checkpoint keeps its trained head's layout
    fields = finetune.head_fields(arguments(dataset="activitynet_captions", grounding_num_positions=32))
    assert fields["grounding_num_positions"] == 32 and fields["grounding_pooling_counts"] == [15, 8]
    assert finetune.head_fields(arguments(dataset="charades_sta"))["grounding_num_positions"] == 16
    trained = LocVTPConfig(grounding_num_positions=16)
    assert finetune.head_fields(arguments(dataset="activitynet_captions"), trained)["grounding_num_positions"] == 16


def test_finetuning_on_a_features_folder_with_charades_sta_annotations(
    tmp_path, monkeypatch, capsys, extract, checkpoint, video_folder, world
):
    hub = FakeHub(Path(constants.HF_HUB_CACHE))
    for name in ("create_repo", "create_branch", "create_commit"):
        monkeypatch.setattr(HfApi, name, lambda api, *args, _name=name, **kwargs: getattr(hub, _name)(*args, **kwargs))
    features = tmp_path / "features"
    run_script(monkeypatch, extract, "--videos", video_folder, "--model_name_or_path", checkpoint, "--output",
               features, "--num_workers", 0)
    # Charades-STA's format: "VIDEO START END##SENTENCE" lines, durations in Charades_v1_<split>.csv
    lines = [f"{event_video.video_id} {event.start} {event.end}##{event.sentence}"
             for event_video in world.videos("train") for event in event_video.events]
    lines += ["missing-video 1.0 3.0##a red square grows", "train-00000 5.0 5.0##an empty moment"]
    annotations = tmp_path / "charades_sta_test.txt"
    annotations.write_text("\n".join(lines) + "\n")
    other_lines = [f"missing-video 1.0 {end}.0##a red square grows\n" for end in (2, 3, 4)]
    (tmp_path / "other.txt").write_text("".join(other_lines))
    durations = {video.video_id: video.duration for video in world.videos("train")} | {"missing-video": 10.0}
    (tmp_path / "Charades_v1_test.csv").write_text(
        "id,length\n" + "".join(f"{video_id},{length}\n" for video_id, length in durations.items())
    )
    output_dir = tmp_path / "run"
    run_script(monkeypatch, load_script("finetune_grounding"), "--dataset", "charades_sta", "--model_name_or_path",
               checkpoint, "--features_dir", features, "--train_annotations", annotations, "--eval_annotations",
               annotations, "--max_steps", 3, "--per_device_batch_size", 4, "--warmup_steps", 0,
               "--grounding_num_positions", 8, "--grounding_hidden_size", 16, "--output_dir", output_dir,
               "--num_plots", 1, "--push_to_hub", "--hub_model_id", "someone/grounding")
    assert "| R@1,IoU=0.5 |" in capsys.readouterr().out
    results = json.loads((output_dir / "grounding_results.json").read_text())
    num_events = len(lines) - 2
    assert results["annotations"]["eval"]["num_moments_dropped"] == 1
    assert results["annotations"]["eval"]["num_queries_dropped"] == 1
    assert results["missing_feature_files"] == {"train": 1, "eval": 1}
    assert results["queries_without_features"] == {"train": 1, "eval": 1}
    assert results["train_queries"] == results["eval_queries"] == num_events
    assert results["steps"] == 3 and set(results["after"]) == set(results["before"])
    assert results["saliency"] is False and not any("HL-" in name for name in results["after"])  # no annotations
    assert len(list((output_dir / "plots").glob("*.png"))) == 1
    model = LocVTPForTemporalGrounding.from_pretrained(output_dir)
    assert model.config.grounding_num_positions == 8 and model.config.grounding_freeze_encoder

    finetune = load_script("finetune_grounding")
    with pytest.raises(ValueError, match=r"--saliency on needs highlight annotations, which only \('synthetic', "):
        run_script(monkeypatch, finetune, "--dataset", "charades_sta", "--model_name_or_path", checkpoint,
                   "--features_dir", features, "--train_annotations", annotations, "--eval_annotations", annotations,
                   "--saliency", "on")
    with pytest.raises(ValueError, match="--saliency must be one of"):
        run_script(monkeypatch, finetune, "--saliency", "yes")
    with pytest.raises(ValueError, match="--dataset charades_sta needs --features_dir"):
        run_script(monkeypatch, finetune, "--dataset", "charades_sta", "--model_name_or_path", checkpoint,
                   "--train_annotations", annotations, "--eval_annotations", annotations)
    with pytest.raises(ValueError, match="--random_encoder is not a control on --dataset charades_sta"):
        run_script(monkeypatch, finetune, "--dataset", "charades_sta", "--model_name_or_path", checkpoint,
                   "--features_dir", features, "--train_annotations", annotations, "--eval_annotations", annotations,
                   "--random_encoder", "true")
    with pytest.raises(ValueError, match="None of the 3 train queries has the clip features"):
        run_script(monkeypatch, finetune, "--dataset", "charades_sta", "--model_name_or_path", checkpoint,
                   "--features_dir", features, "--train_annotations", tmp_path / "other.txt", "--eval_annotations",
                   annotations, "--durations", tmp_path / "Charades_v1_test.csv", "--output_dir", tmp_path / "refused")

    (commit,) = hub.commits
    uploaded = set(commit["files"])
    assert {"model.safetensors", "processor_config.json", "README.md", "grounding_results.json"} <= uploaded
    card = ModelCard(commit["files"]["README.md"].decode())
    assert {result.metric_type: result.metric_value for result in card.data.eval_results} == results["after"]
    assert "features `features`" in card.text  # the folder by its name: the card is public, this machine's paths not
    for name in ("README.md", "config.json"):
        assert str(tmp_path.parent).encode() not in commit["files"][name], name


def test_a_resumed_grounding_finetuning_ends_with_the_same_weights(tmp_path, monkeypatch, checkpoint):
    arguments = ["--model_name_or_path", checkpoint, "--world_train_videos", 3, "--world_test_videos", 2,
                 "--max_steps", 5, "--per_device_batch_size", 4, "--warmup_steps", 1, "--checkpointing_steps", 2,
                 "--grounding_num_positions", 8, "--grounding_hidden_size", 16]
    run_script(monkeypatch, load_script("finetune_grounding"), *arguments, "--output_dir", tmp_path / "uninterrupted")
    # the world's queries have highlight annotations: --saliency auto trains a saliency head jointly, and both
    # evaluations score it, zero-shot saliency and random scores at every level
    results = json.loads((tmp_path / "uninterrupted" / "grounding_results.json").read_text())
    assert results["saliency"] is True and results["saliency_clip_seconds"] == 1.0
    highlight_keys = {f"HL-{name}@{level}" for name in ("mAP", "Hit1") for level in HIGHLIGHT_SALIENCY_THRESHOLDS}
    for evaluation in (results["before"], results["after"]):
        for prefix in ("", "zero-shot ", "random "):
            assert all(0 <= evaluation[prefix + key] <= 1 for key in highlight_keys)
    assert results["after"]["HL-mAP@Fair"] != results["before"]["HL-mAP@Fair"]  # the head trained
    assert results["after"]["random HL-mAP@Fair"] == results["before"]["random HL-mAP@Fair"]  # the same draws
    assert LocVTPConfig.from_pretrained(tmp_path / "uninterrupted").grounding_saliency_head
    # a run stopped after its step-2 checkpoint, then resumed
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoints" / "step_2",
                    tmp_path / "resumed" / "checkpoints" / "step_2")
    run_script(monkeypatch, load_script("finetune_grounding"), *arguments, "--output_dir", tmp_path / "resumed",
               "--resume_from_checkpoint", "latest")
    assert json.loads((tmp_path / "resumed" / "grounding_results.json").read_text())["steps"] == 5
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], **CROSS_PROCESS_TOLERANCE, msg=name)

    with pytest.raises(ValueError, match="grounding_hidden_size 16 -> 32"):
        run_script(monkeypatch, load_script("finetune_grounding"), *arguments[:-2], "--grounding_hidden_size", 32,
                   "--output_dir", tmp_path / "resumed", "--resume_from_checkpoint", "latest")


def test_finetuning_a_pretraining_checkpoint_learns_on_the_synthetic_world(tmp_path, monkeypatch):
    """pretrain.py for a short while, then head-only fine-tuning on the cached clip features of the raw synthetic
    videos: R@1 at IoU 0.5 on held-out videos rises far above the untrained head's. (A random encoder only lets the
    head learn where moments usually are, about 0.16 here; the margin needs features that know the sentences.)"""
    world = ["--world_train_videos", 100]
    pretraining = tmp_path / "pretrain"
    # the image tower: at this tiny size (width 32, 200 steps) it learns the world's objects faster than the default
    # VideoMAE clip encoder, and this test is about fine-tuning, not about the encoder
    run_script(monkeypatch, load_script("pretrain"), *world, "--world_test_videos", 4, "--output_dir", pretraining,
               "--vision_model_type", "vit", "--hidden_size", 32, "--projection_dim", 16, "--num_clips", 8,
               "--per_device_batch_size", 16, "--max_steps", 200, "--learning_rate", 3e-3, "--warmup_steps", 20, "--checkpointing_steps", 0,
               "--num_workers", 0, "--probe_num_clips", 8, "--seed", 0,
               # spans cut exactly to their event and the paper's losses: what 200 steps learn from
               "--world_pretraining_span_coverage", 1, "--discovery_mutual", "false", "--localization_warmup_steps", 0)
    output_dir = tmp_path / "grounding"
    run_script(monkeypatch, load_script("finetune_grounding"), "--model_name_or_path", pretraining, *world,
               "--world_test_videos", 30, "--max_steps", 600, "--learning_rate", 3e-3, "--warmup_steps", 20,
               "--grounding_num_positions", 8, "--grounding_hidden_size", 32, "--seed", 0, "--output_dir", output_dir)
    results = json.loads((output_dir / "grounding_results.json").read_text())
    assert results["eval_queries"] > 100 and results["unreadable_videos"] == []
    assert results["last_loss"] < 0.5 * results["first_loss"]
    assert results["after"]["R@1,IoU=0.5"] > results["before"]["R@1,IoU=0.5"] + 0.15, results


def test_saliency_off_trains_moments_only_and_still_reports_the_baselines(tmp_path, monkeypatch, checkpoint):
    output_dir = tmp_path / "off"
    run_script(monkeypatch, load_script("finetune_grounding"), "--model_name_or_path", checkpoint,
               "--world_train_videos", 2, "--world_test_videos", 2, "--max_steps", 1, "--per_device_batch_size", 4,
               "--warmup_steps", 0, "--grounding_num_positions", 8, "--grounding_hidden_size", 16, "--saliency", "off",
               "--output_dir", output_dir)
    results = json.loads((output_dir / "grounding_results.json").read_text())
    assert results["saliency"] is False and "HL-mAP@Fair" not in results["after"]
    assert {"zero-shot HL-mAP@Fair", "random HL-Hit1@VeryGood"} <= set(results["after"])
    assert not LocVTPConfig.from_pretrained(output_dir).grounding_saliency_head


def saliency_queries() -> Dataset:
    """Two queries over 8-second videos: one with QVHighlights-style annotations (2-second clips 1 and 2, mean
    scores 4 and 2) and two windows, one without annotations."""
    rows = [
        dict(query_id="q0", video_id="a", duration=8.0, query="a red square grows", moments=[[2.0, 6.0], [2.0, 4.0]],
             relevant_clip_ids=[1, 2], saliency_scores=[[4.0, 4.0], [1.0, 3.0]]),
        dict(query_id="q1", video_id="b", duration=6.0, query="a blue ball", moments=[[0.0, 2.0]],
             relevant_clip_ids=None, saliency_scores=None),
    ]
    return Dataset.from_list(rows, features=LOADED_GROUNDING_FEATURES)


def test_grounding_datasets_carry_saliency_labels_by_the_times_of_the_clips(checkpoint, world):
    processor = LocVTPProcessor.from_pretrained(checkpoint)
    features = {"a": torch.randn(4, 16), "b": torch.randn(3, 16)}  # clips of 2 s over 8 s and 6 s
    options = dict(saliency_clip_seconds=QVHIGHLIGHTS_CLIP_SECONDS)
    dataset = GroundingFeatureDataset(saliency_queries(), features, processor, training=True, saliency_labels=True,
                                      **options)
    items = [dataset[index] for index in range(len(dataset))]  # q0 once per window, then q1
    assert [item["saliency_labels"].tolist() for item in items[:2]] == [[0.0, 1.0, 0.5, 0.0]] * 2
    assert torch.isnan(items[2]["saliency_labels"]).all() and len(items[2]["saliency_labels"]) == 3
    batch = GroundingCollator()(items)
    assert batch["saliency_labels"].shape == (3, 4) and torch.isnan(batch["saliency_labels"][2]).all()
    assert batch["video_mask"].tolist()[2] == [True, True, True, False]

    evaluation_set = GroundingFeatureDataset(saliency_queries(), features, processor, **options)
    assert "saliency_labels" not in evaluation_set[0] and evaluation_set.saliency_references[1] is None
    assert evaluation_set.saliency_references[0]["relevant_clip_ids"] == [1, 2]
    # the annotations are used only with their clip length
    assert GroundingFeatureDataset(saliency_queries(), features, processor).saliency_references == [None, None]
    with pytest.raises(ValueError, match="and their clip length, saliency_clip_seconds; it is not given"):
        GroundingFeatureDataset(saliency_queries(), features, processor, training=True, saliency_labels=True)
    without = saliency_queries().map(lambda row: dict(relevant_clip_ids=None, saliency_scores=None))
    with pytest.raises(ValueError, match="saliency_labels=True needs highlight annotations"):
        GroundingFeatureDataset(without, features, processor, training=True, saliency_labels=True, **options)

    # raw videos: the targets follow the clips the processor cut (with their spans), over 1-second annotation clips
    queries = world.grounding_dataset("train")
    videos = {video.video_id: video.video_id for video in world.videos("train")}
    video_set = GroundingVideoDataset(queries, videos, processor, world.render, world.fps, training=True,
                                      saliency_labels=True, saliency_clip_seconds=world.saliency_clip_seconds)
    item = video_set[0]
    labels, spans = item["saliency_labels"], item["clip_spans"]
    assert labels.shape == spans.shape[:1] == item["pixel_values_videos"].shape[:1]
    start, end = queries[0]["moments"][0]
    centres = spans.mean(dim=1)
    assert ((labels >= 0) & (labels <= 1)).all() and labels[(centres - (start + end) / 2).abs().argmin()] > 0
    assert (labels[(centres < start - 2.0) | (centres > end + 2.0)] == 0).all()  # clips of about 2 s


def test_a_saliency_head_learns_where_the_clip_features_show_the_query():
    """Learnable data: one query per video (its first event), whose clips hold the query's embedding plus noise,
    the other clips noise. The head, trained jointly with the moments, ranks the clips far above random scores, as
    zero-shot saliency (the cosine of each clip with the query) does on such features."""
    torch.manual_seed(0)
    world = SyntheticWorld(seed=5, num_train=32, num_test=12, size=IMAGE_SIZE, min_duration=12.0, max_duration=20.0,
                           min_events=3, max_events=4)
    queries = {
        split: world.grounding_dataset(split).filter(lambda row: row["query_id"].endswith("#0"))
        for split in ("train", "test")
    }
    tokenizer = word_tokenizer([*queries["train"]["query"], *queries["test"]["query"]])
    config = LocVTPConfig(
        vision_config=dict(VISION_CONFIGS["vit"]), text_config={**TEXT_CONFIGS["bert"], "vocab_size": len(tokenizer)},
        projection_dim=16, frames_per_clip=2, grounding_num_positions=8, grounding_hidden_size=32,
        grounding_num_conv_layers=1, grounding_conv_kernel_size=3, grounding_saliency_head=True,
    )
    model = LocVTPForTemporalGrounding(config)
    model.freeze_towers(vision=True, text=True)
    processor = LocVTPProcessor(LocVTPVideoProcessor(frames_per_clip=2), tokenizer)
    features = {}
    for split in ("train", "test"):
        for video, query in zip(world.videos(split), queries[split]):
            clips = torch.randn(int(video.duration), 16)  # 1-second clips
            centres = torch.arange(len(clips)) + 0.5
            with torch.no_grad():
                embedding = model.locvtp.get_text_features(**processor(text=[query["query"]], return_tensors="pt"))
            (start, end), = query["moments"]
            clips[(centres >= start) & (centres < end)] += 4 * embedding.pooler_output[0]
            features[video.video_id] = clips
    options = dict(saliency_clip_seconds=world.saliency_clip_seconds)
    train_set = GroundingFeatureDataset(queries["train"], features, processor, training=True, saliency_labels=True,
                                        **options)
    test_set = GroundingFeatureDataset(queries["test"], features, processor, **options)
    before = evaluate_grounding_model(model, processor, test_set).metrics
    losses = train_grounding_model(model, train_set, max_steps=150, batch_size=16, learning_rate=3e-3, progress=False)
    after = evaluate_grounding_model(model, processor, test_set)
    metrics = after.metrics
    assert losses[-1] < 0.7 * losses[0]
    assert metrics["HL-mAP@Fair"] > metrics["random HL-mAP@Fair"] + 0.25, metrics
    assert metrics["HL-mAP@Fair"] > before["HL-mAP@Fair"] + 0.2, (before, metrics)
    assert metrics["zero-shot HL-mAP@Fair"] > metrics["random HL-mAP@Fair"] + 0.25, metrics
    assert [len(scores) for scores in after.saliency_predictions] == [int(d) for d in queries["test"]["duration"]]


def test_grounding_steps_with_a_nan_loss_are_skipped_and_consecutive_ones_stop(checkpoint, world, caplog):
    model = LocVTPForTemporalGrounding.from_pretrained(
        checkpoint, grounding_num_positions=8, grounding_hidden_size=16, grounding_num_conv_layers=1
    )
    model.freeze_towers(vision=True, text=True)
    queries = world.grounding_dataset("train")
    generator = torch.Generator().manual_seed(0)
    features = {video_id: torch.randn(8, 16, generator=generator) for video_id in set(queries["video_id"])}
    poisoned = sorted(features)[0]  # the queries of one video give a NaN loss
    features[poisoned][3, 5] = float("nan")
    processor = LocVTPProcessor.from_pretrained(checkpoint)
    dataset = GroundingFeatureDataset(queries, features, processor, training=True)
    head = {name: value.clone() for name, value in model.grounding_head.state_dict().items()}

    with caplog.at_level(logging.WARNING):
        losses = train_grounding_model(model, dataset, max_steps=8, batch_size=1, progress=False)
    nonfinite = [step for step, loss in enumerate(losses, start=1) if not math.isfinite(loss)]
    assert 0 < len(nonfinite) < len(losses)
    assert [f"Step {step}: the loss is not finite" in caplog.text for step in nonfinite] == [True] * len(nonfinite)
    trained = model.grounding_head.state_dict()
    assert all(torch.isfinite(value).all() for value in trained.values())
    assert any(not torch.equal(trained[name], head[name]) for name in head)  # the finite steps trained

    all_nan = {video_id: torch.full((8, 16), float("nan")) for video_id in features}
    dataset = GroundingFeatureDataset(queries, all_nan, processor, training=True)
    with pytest.raises(RuntimeError, match=r"not finite for 2 optimizer steps in a row \(steps 1 to 2\)"):
        train_grounding_model(model, dataset, max_steps=5, batch_size=1, progress=False,
                              max_consecutive_nonfinite_steps=2)
