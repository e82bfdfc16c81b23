"""`examples/pretrain.py` end to end on a tiny synthetic world: the saved model loads through the Auto classes, the
evaluation is written, a run resumed from a checkpoint ends with the same weights as an uninterrupted one (also past
the folder of an interrupted checkpoint write), and steps with a NaN loss are skipped."""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from testing_utils import CROSS_PROCESS_TOLERANCE
from transformers import AutoModel, AutoProcessor

import locvtp_hf  # noqa: F401
from locvtp_hf import LocVTPProcessor
from locvtp_hf.training import checkpoint_step, latest_checkpoint, load_data_position


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pretrain.py"
TINY_RUN = [
    "--world_train_videos", "6", "--world_test_videos", "4", "--hidden_size", "32", "--projection_dim", "16",
    "--num_clips", "4", "--per_device_batch_size", "4", "--num_workers", "0", "--logging_steps", "1",
    "--warmup_steps", "2", "--probe_num_clips", "8",
]


# one thread per subprocess: the suite's run time stays stable on a machine with few cores
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_pretrain(output_dir: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(output_dir), *TINY_RUN, *arguments],
        capture_output=True, text=True, timeout=600, env=SUBPROCESS_ENV,
    )
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def launch_two_processes(output_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`examples/pretrain.py` in two CPU processes (gloo) under `accelerate launch`."""
    config = Path(__file__).resolve().parents[1] / "examples" / "accelerate_configs" / "multi_cpu.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port", "0",
         str(SCRIPT), "--output_dir", str(output_dir), *TINY_RUN, *arguments],
        capture_output=True, text=True, timeout=600, env=SUBPROCESS_ENV,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    # arguments from a config file, one of them overridden on the command line
    (output_dir / "run.yaml").write_text("max_steps: 99\ncheckpointing_steps: 3\n")
    run_pretrain(output_dir, "--config", str(output_dir / "run.yaml"), "--max_steps", "6")
    return output_dir


def test_the_run_saves_a_loadable_model_and_its_evaluation(uninterrupted_run):
    model = AutoModel.from_pretrained(uninterrupted_run)
    processor = AutoProcessor.from_pretrained(uninterrupted_run)
    assert type(model).__name__ == "LocVTPModel" and type(processor).__name__ == "LocVTPProcessor"
    results = json.loads((uninterrupted_run / "eval_results.json").read_text())
    assert results["steps"] == 6 and results["skipped_training_samples"] == 0
    for name in ("text_to_video_R@1", "text_to_video_R@5", "probe_hit_rate", "probe_random_rate"):
        assert 0.0 <= results[name] <= 1.0
    assert sorted(path.name for path in (uninterrupted_run / "checkpoints").iterdir()) == ["step_3", "step_6"]


def test_a_resumed_run_ends_with_the_same_weights(uninterrupted_run, tmp_path):
    # a run killed while it wrote its step-6 checkpoint (after the complete step-3 one), then resumed
    shutil.copytree(uninterrupted_run / "checkpoints" / "step_3", tmp_path / "checkpoints" / "step_3")
    partial = tmp_path / "checkpoints" / "step_6.partial"
    shutil.copytree(uninterrupted_run / "checkpoints" / "step_6", partial,
                    ignore=shutil.ignore_patterns("*.safetensors", "run_arguments.json"))
    result = run_pretrain(tmp_path, "--max_steps", "6", "--checkpointing_steps", "3",
                          "--resume_from_checkpoint", "latest")
    assert f"Resumed from {tmp_path / 'checkpoints' / 'step_3'} at step 3" in result.stderr
    assert f"Ignoring 1 incomplete checkpoint(s) whose write was interrupted: {partial}" in result.stderr
    # the new step-6 checkpoint replaced the partial folder
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["step_3", "step_6"]
    expected = load_file(uninterrupted_run / "model.safetensors")
    resumed = load_file(tmp_path / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], **CROSS_PROCESS_TOLERANCE, msg=name)


def test_latest_checkpoint_is_the_newest_complete_one(tmp_path, caplog):
    assert latest_checkpoint(tmp_path / "none") is None
    for name in ("step_2", "step_10", "step_12.partial", "step_9.partial", "logs"):
        (tmp_path / name).mkdir()
    (tmp_path / "step_11").write_text("a file, not a checkpoint folder")
    assert latest_checkpoint(tmp_path) == tmp_path / "step_10"
    assert "Ignoring 2 incomplete checkpoint(s) whose write was interrupted" in caplog.text
    assert str(tmp_path / "step_12.partial") in caplog.text and str(tmp_path / "step_9.partial") in caplog.text
    assert checkpoint_step(tmp_path / "step_10") == 10
    with pytest.raises(ValueError, match="step_12.partial is an incomplete checkpoint: its write was interrupted"):
        checkpoint_step(tmp_path / "step_12.partial")
    with pytest.raises(ValueError, match="its name must be step_<N>"):
        checkpoint_step(tmp_path / "logs")


class TouchOnLoad:
    """Unpickling it creates the file `path`: what a malicious pickle could do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def test_the_stream_position_loads_without_running_pickled_code(tmp_path):
    # the shape of a StatefulDataLoader state with two workers: numbers in plain containers
    workers = {f"worker_{i}": {"dataset_state": {"epoch": 1, "shard": 2, "sample": 3}} for i in range(2)}
    state = {"_snapshot": {"_worker_snapshots": workers, "_main_snapshot": {"_base_seed": 8565450966900595977}},
             "_iterator_finished": False}
    torch.save(state, tmp_path / "data_position_0.pt")
    assert load_data_position(tmp_path, 0) == state
    torch.save({"epoch": TouchOnLoad(tmp_path / "pwned")}, tmp_path / "data_position_1.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_data_position(tmp_path, 1)
    assert not (tmp_path / "pwned").exists()


def checkpoint_with_nan(source: Path, folder: Path, parameter: str, token: str | None = None) -> Path:
    """A copy of the model and processor in `source` whose `parameter` is NaN: all of it, or the row of `token`."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    weights = load_file(folder / "model.safetensors")
    if token is None:
        weights[parameter].fill_(float("nan"))
    else:
        row = LocVTPProcessor.from_pretrained(folder).tokenizer.convert_tokens_to_ids(token)
        weights[parameter][row] = float("nan")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_steps_with_a_nan_loss_are_skipped_by_both_processes(uninterrupted_run, tmp_path):
    # the captions with the word "hoop" (a few of the pairs) give a NaN loss, the others a finite one
    word = "locvtp.text_model.embeddings.word_embeddings.weight"
    checkpoint = checkpoint_with_nan(uninterrupted_run, tmp_path / "checkpoint", word, token="hoop")
    result = launch_two_processes(tmp_path / "run", "--model_name_or_path", str(checkpoint), "--max_steps", "6",
                                  "--checkpointing_steps", "0")
    skipped = [line for line in result.stderr.splitlines() if "the loss is not finite" in line]
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert 0 < len(skipped) < 6 and results["skipped_nonfinite_steps"] == len(skipped) and results["steps"] == 6
    assert all("of 2 process(es); the step is skipped, without a weight update" in line for line in skipped)
    trained = load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.isfinite(value).all() for name, value in trained.items() if name != word)
    assert torch.isfinite(trained[word]).all(dim=1).sum() == len(trained[word]) - 1  # only the injected row


def test_consecutive_nan_losses_stop_the_run(uninterrupted_run, tmp_path):
    checkpoint = checkpoint_with_nan(uninterrupted_run, tmp_path / "checkpoint", "locvtp.visual_projection.weight")
    result = run_pretrain(tmp_path / "run", "--model_name_or_path", str(checkpoint), "--max_steps", "6",
                          "--max_consecutive_nonfinite_steps", "3", check=False)
    assert result.returncode != 0
    assert "The loss was not finite for 3 optimizer steps in a row (steps 1 to 3): stopping." in result.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_checkpoint_keeps_its_loss_settings_unless_a_flag_is_given(uninterrupted_run, tmp_path):
    saved = json.loads((uninterrupted_run / "config.json").read_text())
    run_pretrain(tmp_path / "run", "--model_name_or_path", str(uninterrupted_run), "--max_steps", "2",
                 "--temporal_loss_weight", "0", "--discovery_mutual", "false", "--eval_data", "none")
    continued = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["temporal_loss_weight"] == 1 and saved["discovery_mutual"] is True
    assert continued["temporal_loss_weight"] == 0 and continued["discovery_mutual"] is False
    for name in ("coarse_loss_weight", "fine_loss_weight", "fine_negatives", "discovery_excluded_token_ids"):
        assert continued[name] == saved[name]


def test_a_few_hundred_steps_lift_the_localization_probe(tmp_path):
    run_pretrain(
        tmp_path, "--max_steps", "300", "--per_device_batch_size", "16", "--hidden_size", "64",
        "--world_train_videos", "100", "--world_test_videos", "30", "--num_clips", "8", "--probe_num_clips", "16",
        "--warmup_steps", "30", "--checkpointing_steps", "0", "--localization_warmup_steps", "100",
        # spans cut exactly to their event: the world that a few hundred steps learn (half-misaligned spans need more)
        "--world_pretraining_span_coverage", "1",
    )
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["probe_hit_rate"] > 1.5 * results["probe_random_rate"], results
    assert results["text_to_video_R@5"] > results["text_to_video_R@5_chance"], results
    # the head-free localization figures: sentence-clip similarity ranks the moment's clips first
    assert results["in_video_auc"] > 0.55, results
    assert results["zero_shot_mIoU"] > results["zero_shot_whole_video_mIoU"], results


def test_training_reads_a_videofolder_and_skips_unreadable_videos(tmp_path):
    from locvtp_hf.synthetic import SyntheticWorld

    folder = SyntheticWorld(seed=1, num_train=3, size=32).export(tmp_path / "data", "train")
    (folder / "broken.mp4").write_bytes(b"this is not a video" * 100)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    broken = [{"file_name": "broken.mp4", "text": "a red square moves left", "start": 0.0, "end": 2.0}] * len(rows)
    # rows without a caption are dropped when the metadata is read, and reported with their row
    no_caption = [{**rows[0], "text": ""}, {**rows[1], "text": "  "}, {**rows[2], "text": None}]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows + broken + no_caption))

    result = run_pretrain(tmp_path / "run", "--train_data", str(folder), "--max_steps", "4", "--checkpointing_steps",
                          "0", "--report_to", "tensorboard")
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["steps"] == 4
    assert results["skipped_training_samples"] > 0
    assert results["rows_without_caption"] == 3
    first_dropped = 2 * len(rows)
    assert f"3 row(s) of {folder / 'metadata.jsonl'} have an empty or missing caption" in result.stderr
    assert f"{folder / 'metadata.jsonl'} row {first_dropped}" in result.stderr
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))  # the tensorboard tracker wrote


def test_real_data_without_evaluation_builds_no_synthetic_world(tmp_path):
    from locvtp_hf.synthetic import SyntheticWorld

    # 64 px videos for a 32 px model: with --resize_while_decoding they are shrunk as they are decoded
    folder = SyntheticWorld(seed=1, num_train=3, size=64).export(tmp_path / "data", "train")
    run_pretrain(tmp_path / "run", "--train_data", str(folder), "--eval_data", "none", "--max_steps", "2",
                 "--checkpointing_steps", "0", "--world_seed", "-1",  # a world of this seed cannot be built
                 "--resize_while_decoding")
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["steps"] == 2 and "text_to_video_R@1" not in results
    assert results["skipped_training_samples"] == 0
    assert LocVTPProcessor.from_pretrained(tmp_path / "run").video_processor.resize_while_decoding
    refused = run_pretrain(tmp_path / "refused", "--eval_data", "none", "--push_to_hub", "--hub_model_id", "a/b",
                           check=False)
    assert refused.returncode != 0
    assert "--push_to_hub writes the synthetic world's zero-shot figures into the model card" in refused.stderr


def test_two_cpu_processes_follow_the_schedule_with_a_loss_switched_off(tmp_path):
    """Two processes under DDP: the learning-rate schedule counts optimizer steps (not steps x processes), and a
    loss weight of 0 (which leaves the context head without gradient) does not stop DDP."""
    result = launch_two_processes(tmp_path, "--max_steps", "4", "--warmup_steps", "2", "--temporal_loss_weight", "0",
                                  "--checkpointing_steps", "0")
    assert "2 process(es)" in result.stderr
    learning_rates = [float(match[1]) for match in re.finditer(r" INFO step \d+: .*\blr ([^,\s]+)", result.stderr)]
    # linear warmup over 2 steps to 1e-3, then cosine to 0 at step 4
    assert learning_rates == pytest.approx([5e-4, 1e-3, 5e-4, 0.0], abs=1e-9)


def test_resuming_with_arguments_that_shape_the_run_changed_is_refused(uninterrupted_run, tmp_path):
    shutil.copytree(uninterrupted_run / "checkpoints" / "step_3", tmp_path / "checkpoints" / "step_3")
    result = run_pretrain(tmp_path, "--max_steps", "6", "--learning_rate", "0.5", "--resume_from_checkpoint", "latest",
                          check=False)
    assert result.returncode != 0
    assert "learning_rate 0.001 -> 0.5" in result.stderr


def test_streamed_shards_resume_at_the_same_position(uninterrupted_run, tmp_path):
    from locvtp_hf.data import videofolder_rows, write_webdataset_shards
    from locvtp_hf.synthetic import SyntheticWorld

    folder = SyntheticWorld(seed=1, num_train=4, size=32).export(tmp_path / "data", "train")
    shards = write_webdataset_shards(videofolder_rows(folder), tmp_path / "shards", samples_per_shard=4)
    assert len(shards) >= 4
    (tmp_path / "shards" / "empty.tar").write_bytes(b"")  # a shard that cannot be read is skipped and counted
    streamed = ["--model_name_or_path", str(uninterrupted_run), "--train_data", str(tmp_path / "shards" / "*.tar"),
                "--max_steps", "6", "--checkpointing_steps", "2", "--num_workers", "2"]
    run_pretrain(tmp_path / "uninterrupted", *streamed)
    # 6 steps of 4 samples take each of the 2 workers through all of its shards
    assert json.loads((tmp_path / "uninterrupted" / "eval_results.json").read_text())["skipped_shards"] >= 1
    checkpoint = Path("checkpoints") / "step_2"
    shutil.copytree(tmp_path / "uninterrupted" / checkpoint, tmp_path / "resumed" / checkpoint)
    result = run_pretrain(tmp_path / "resumed", *streamed, "--resume_from_checkpoint", "latest")
    assert "Resumed from" in result.stderr and "Streaming" in result.stderr
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], **CROSS_PROCESS_TOLERANCE, msg=name)


def test_validation_data_is_evaluated_periodically_and_the_best_model_is_kept(tmp_path):
    from locvtp_hf.synthetic import SyntheticWorld

    world = SyntheticWorld(seed=3, num_train=4, num_test=4, size=32)
    train_folder = world.export(tmp_path / "data", "train")
    validation_folder = world.export(tmp_path / "data", "test")
    output_dir = tmp_path / "run"
    run_pretrain(output_dir, "--train_data", str(train_folder), "--eval_data", str(validation_folder),
                 "--max_steps", "4", "--eval_steps", "2", "--metric_for_best_model", "text_to_video_R@1",
                 "--checkpointing_steps", "0", "--world_seed", "-1")  # a world of this seed cannot be built

    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["evaluated_on"] == str(validation_folder)
    for name in ("text_to_video_R@1", "video_to_text_R@1", "text_to_video_R@1_chance", "in_video_auc",
                 "zero_shot_R@1,IoU=0.5", "probe_hit_rate"):
        assert 0.0 <= results[name] <= 1.0, name
    assert results["text_to_video_R@1_chance"] == 1 / 4 and results["validation_unreadable_videos"] == 0
    best = json.loads((output_dir / "best_model" / "best_metric.json").read_text())
    assert best["metric"] == "text_to_video_R@1" and best["step"] in (2, 4)
    # the final evaluation scores the step-4 model: the kept model is at least as good, and is it when kept at step 4
    assert best["value"] >= results["text_to_video_R@1"]
    if best["step"] == 4:
        assert best["value"] == results["text_to_video_R@1"]
    assert AutoProcessor.from_pretrained(output_dir / "best_model") is not None
    assert AutoModel.from_pretrained(output_dir / "best_model").config.projection_dim > 0


def test_metric_for_best_model_needs_periodic_evaluation(tmp_path):
    result = run_pretrain(tmp_path / "run", "--metric_for_best_model", "text_to_video_R@1", check=False)
    assert result.returncode != 0 and "--metric_for_best_model chooses among periodic evaluations" in result.stderr


def test_the_localization_warmup_is_logged_step_by_step_and_checked(tmp_path):
    result = run_pretrain(tmp_path / "run", "--max_steps", "3", "--localization_warmup_steps", "2",
                          "--checkpointing_steps", "0", "--eval_data", "none")
    steps = [line for line in result.stderr.splitlines() if " INFO step " in line]
    # the ramp is logged while it is below 1; from step 2 on, the model's own weighted loss is used
    assert ["localization_ramp 0.5" in line for line in steps] == [True, False, False]
    # the temporal term's two parts are logged beside it
    assert all("loss_temporal_cross_modal" in line and "loss_temporal_intra_video" in line for line in steps)
    refused = run_pretrain(tmp_path / "refused", "--localization_warmup_steps", "-1", check=False)
    assert refused.returncode != 0 and "--localization_warmup_steps must be >= 0" in refused.stderr


def test_accumulated_negatives_train_and_resume_to_the_same_weights(tmp_path):
    """`--accumulate_negatives`: the losses of each step are those of the whole accumulated batch (cached
    embeddings), logged once per step; a run resumed from a checkpoint ends with the same weights."""
    accumulated = ["--accumulate_negatives", "--gradient_accumulation_steps", "2", "--per_device_batch_size", "2",
                   "--max_steps", "4", "--checkpointing_steps", "2", "--eval_data", "none"]
    result = run_pretrain(tmp_path / "uninterrupted", *accumulated)
    assert "global batch 2 x 2 accumulation (the losses over the accumulated batch, from cached embeddings)" in (
        result.stderr
    )
    logged = [line for line in result.stderr.splitlines() if " INFO step " in line]
    assert len(logged) == 4 and all("loss_temporal" in line for line in logged)
    checkpoint = Path("checkpoints") / "step_2"
    shutil.copytree(tmp_path / "uninterrupted" / checkpoint, tmp_path / "resumed" / checkpoint)
    result = run_pretrain(tmp_path / "resumed", *accumulated, "--resume_from_checkpoint", "latest")
    assert "Resumed from" in result.stderr
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], **CROSS_PROCESS_TOLERANCE, msg=name)
    # a measurement of one backward pass does not fit the accumulated one
    refused = run_pretrain(tmp_path / "refused", *accumulated, "--log_term_gradient_norms", check=False)
    assert refused.returncode != 0 and "cannot be combined with --accumulate_negatives" in refused.stderr
