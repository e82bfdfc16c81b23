"""`examples/pretrain.py` end to end on a tiny synthetic world: the saved model loads through the Auto classes, the
evaluation is written, and a run resumed from a checkpoint ends with the same weights as an uninterrupted one."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

import locvtp_hf  # noqa: F401


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "pretrain.py"
TINY_RUN = [
    "--world_train_videos", "6", "--world_test_videos", "4", "--hidden_size", "32", "--projection_dim", "16",
    "--num_clips", "4", "--per_device_batch_size", "4", "--num_workers", "0", "--logging_steps", "1",
    "--warmup_steps", "2", "--probe_num_clips", "8",
]


def run_pretrain(output_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(output_dir), *TINY_RUN, *arguments],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
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
    # a run stopped right after its step-3 checkpoint, then resumed
    shutil.copytree(uninterrupted_run / "checkpoints" / "step_3", tmp_path / "checkpoints" / "step_3")
    result = run_pretrain(tmp_path, "--max_steps", "6", "--checkpointing_steps", "3",
                          "--resume_from_checkpoint", "latest")
    assert "Resumed from" in result.stderr
    expected = load_file(uninterrupted_run / "model.safetensors")
    resumed = load_file(tmp_path / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)


def test_a_few_hundred_steps_lift_the_localization_probe(tmp_path):
    run_pretrain(
        tmp_path, "--max_steps", "300", "--per_device_batch_size", "16", "--hidden_size", "64",
        "--world_train_videos", "100", "--world_test_videos", "30", "--num_clips", "8", "--probe_num_clips", "16",
        "--warmup_steps", "30", "--checkpointing_steps", "0",
    )
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["probe_hit_rate"] > 1.5 * results["probe_random_rate"], results
    assert results["text_to_video_R@5"] > results["text_to_video_R@5_chance"], results


def test_training_reads_a_videofolder_and_skips_unreadable_videos(tmp_path):
    from locvtp_hf.synthetic_world import SyntheticWorld

    folder = SyntheticWorld(seed=1, num_train=3, size=32).export(tmp_path / "data", "train")
    (folder / "broken.mp4").write_bytes(b"this is not a video" * 100)
    rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    broken = [{"file_name": "broken.mp4", "text": "a red square moves left", "start": 0.0, "end": 2.0}] * len(rows)
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows + broken))

    run_pretrain(tmp_path / "run", "--train_data", str(folder), "--max_steps", "4", "--checkpointing_steps", "0",
                 "--report_to", "tensorboard")
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["steps"] == 4
    assert results["skipped_training_samples"] > 0
    assert list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))  # the tensorboard tracker wrote


def test_two_cpu_processes_follow_the_schedule_with_a_loss_switched_off(tmp_path):
    """Two processes under DDP: the learning-rate schedule counts optimizer steps (not steps x processes), and a
    loss weight of 0 (which leaves the context head without gradient) does not stop DDP."""
    config = Path(__file__).resolve().parents[1] / "examples" / "accelerate_configs" / "multi_cpu.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port", "0",
         str(SCRIPT), "--output_dir", str(tmp_path), *TINY_RUN, "--max_steps", "4", "--warmup_steps", "2",
         "--temporal_loss_weight", "0", "--checkpointing_steps", "0"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 process(es)" in result.stderr
    learning_rates = [float(line.rsplit("lr ", 1)[1]) for line in result.stderr.splitlines() if " INFO step " in line]
    # linear warmup over 2 steps to 1e-3, then cosine to 0 at step 4
    assert learning_rates == pytest.approx([5e-4, 1e-3, 5e-4, 0.0], abs=1e-9)


def test_resuming_with_arguments_that_shape_the_run_changed_is_refused(uninterrupted_run, tmp_path):
    shutil.copytree(uninterrupted_run / "checkpoints" / "step_3", tmp_path / "checkpoints" / "step_3")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--output_dir", str(tmp_path), *TINY_RUN, "--max_steps", "6",
         "--learning_rate", "0.5", "--resume_from_checkpoint", "latest"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    assert "learning_rate 0.001 -> 0.5" in result.stderr


def test_streamed_shards_resume_at_the_same_position(uninterrupted_run, tmp_path):
    from locvtp_hf.data import videofolder_rows, write_webdataset_shards
    from locvtp_hf.synthetic_world import SyntheticWorld

    folder = SyntheticWorld(seed=1, num_train=4, size=32).export(tmp_path / "data", "train")
    shards = write_webdataset_shards(videofolder_rows(folder), tmp_path / "shards", samples_per_shard=4)
    assert len(shards) >= 4
    streamed = ["--model_name_or_path", str(uninterrupted_run), "--train_data", str(tmp_path / "shards" / "*.tar"),
                "--max_steps", "4", "--checkpointing_steps", "2", "--num_workers", "2"]
    run_pretrain(tmp_path / "uninterrupted", *streamed)
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoints" / "step_2", tmp_path / "resumed" / "checkpoints" / "step_2")
    result = run_pretrain(tmp_path / "resumed", *streamed, "--resume_from_checkpoint", "latest")
    assert "Resumed from" in result.stderr and "Streaming" in result.stderr
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
