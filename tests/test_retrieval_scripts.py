"""`examples/finetune_retrieval.py` and `examples/evaluate_retrieval.py` end to end on tiny settings: the fine-tuned
model saves and reloads, both evaluations are written, the evaluation script reproduces the fine-tuning script's
figures and reads a jsonl of real video files, skipping and reporting the unreadable ones; a loss that stays NaN stops
the fine-tuning; a resumed fine-tuning ends with the same weights as an uninterrupted one."""

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from testing_utils import CROSS_PROCESS_TOLERANCE, make_config

from locvtp_hf import LocVTPForRetrieval, LocVTPModel, LocVTPProcessor
from locvtp_hf.synthetic import SyntheticWorld


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_script(name: str, cwd: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    # one thread per subprocess: the suite's run time stays stable on a machine with few cores
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def evaluate_script(monkeypatch, *arguments: str) -> None:
    """`examples/evaluate_retrieval.py` in this process (it starts no Accelerator)."""
    monkeypatch.setattr(sys, "argv", ["evaluate_retrieval.py", *arguments])
    runpy.run_path(str(EXAMPLES / "evaluate_retrieval.py"), run_name="__main__")


def test_finetune_then_evaluate(tmp_path, monkeypatch):
    run_script(
        "finetune_retrieval.py", tmp_path, "--model_name_or_path", "new", "--output_dir", str(tmp_path / "model"),
        "--world_train_videos", "8",
        "--world_test_videos", "4", "--per_device_batch_size", "4", "--max_steps", "3", "--warmup_steps", "1",
        "--num_workers", "0", "--logging_steps", "1", "--retrieval_fusion_weight", "0.5", "--renormalization", "dsl",
    )
    results = json.loads((tmp_path / "model" / "retrieval_results.json").read_text())
    assert results["steps"] == 3 and results["skipped_training_samples"] == 0
    for stage in ("before", "after"):
        assert results[stage]["num_texts"] == results[stage]["num_videos"] == 4
        for name in ("text_to_video_R@1", "video_to_text_R@5", "dsl_text_to_video_R@10"):
            assert 0.0 <= results[stage][name] <= 1.0
        assert 1.0 <= results[stage]["text_to_video_median_rank"] <= 4.0
    assert results["before"] != results["after"]  # three steps changed the model
    model = LocVTPForRetrieval.from_pretrained(tmp_path / "model")
    LocVTPProcessor.from_pretrained(tmp_path / "model")
    assert model.config.retrieval_fusion_weight == 0.5

    # the evaluation script on the same synthetic test videos gives the fine-tuning script's figures
    evaluate_script(monkeypatch, "--model_name_or_path", str(tmp_path / "model"), "--world_test_videos", "4",
                    "--renormalization", "dsl", "--output_file", str(tmp_path / "synthetic.json"))
    assert json.loads((tmp_path / "synthetic.json").read_text()) == {**results["after"], "num_unreadable_videos": 0}
    assert not (tmp_path / "synthetic.failed_videos.json").exists()

    # and reads them as files through the generic jsonl reader
    world = SyntheticWorld(seed=0, num_train=0, num_test=4)
    folder = world.export(tmp_path / "data", "test")
    captions = world.captions("test")
    (folder / "pairs.jsonl").write_text("".join(
        json.dumps({"video": f"{video_id}.mp4", "caption": caption}) + "\n"
        for video_id, caption in zip(captions["video_id"], captions["caption"])
    ))
    evaluate_script(monkeypatch, "--model_name_or_path", str(tmp_path / "model"), "--dataset", "jsonl",
                    "--annotations", str(folder / "pairs.jsonl"), "--output_file", str(tmp_path / "jsonl.json"))
    from_files = json.loads((tmp_path / "jsonl.json").read_text())
    assert from_files.keys() == {key for key in results["after"] if not key.startswith("dsl_")} | {
        "num_unreadable_videos"
    }
    assert from_files["num_texts"] == from_files["num_videos"] == 4
    assert all(0.0 <= from_files[name] <= 1.0 for name in from_files if "_R@" in name)


def test_consecutive_nan_losses_stop_the_finetuning(tmp_path, processor):
    model = LocVTPModel(make_config("vit", "bert"))
    with torch.no_grad():
        model.logit_scale.fill_(float("nan"))  # every training loss is NaN; the evaluation does not use it
    model.save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    result = run_script(
        "finetune_retrieval.py", tmp_path, "--model_name_or_path", str(tmp_path / "checkpoint"), "--output_dir",
        str(tmp_path / "model"), "--world_train_videos", "8", "--world_test_videos", "4", "--max_steps", "5",
        "--per_device_batch_size", "4", "--num_workers", "0", "--max_consecutive_nonfinite_steps", "2", check=False,
    )
    assert result.returncode != 0
    assert "Step 1: the loss is not finite (NaN or inf) on 1 of 1 process(es)" in result.stderr
    assert "The loss was not finite for 2 optimizer steps in a row (steps 1 to 2): stopping." in result.stderr
    assert not (tmp_path / "model" / "model.safetensors").exists()


def test_evaluation_skips_and_reports_unreadable_videos(tmp_path, monkeypatch, capsys, processor):
    torch.manual_seed(0)
    LocVTPModel(make_config()).save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    world = SyntheticWorld(seed=3, num_train=0, num_validation=0, num_test=3, size=32)
    folder = world.export(tmp_path / "data", "test")
    (folder / "corrupt.mp4").write_bytes(b"this is not a video" * 50)
    captions = world.captions("test")
    records = [{"video": f"{video_id}.mp4", "caption": caption}
               for video_id, caption in zip(captions["video_id"], captions["caption"])]
    records[1:1] = [{"video": "missing.mp4", "caption": "a square moves"}]  # e.g. a partial download
    records.append({"video": "corrupt.mp4", "caption": ["a ball grows", "a ball"]})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    arguments = ["--model_name_or_path", str(tmp_path / "model"), "--dataset", "jsonl", "--annotations",
                 str(folder / "pairs.jsonl"), "--batch_size", "2", "--disable_progress_bar", "true"]

    for num_workers in ("0", "1"):
        evaluate_script(monkeypatch, *arguments, "--num_workers", num_workers,
                        "--output_file", str(tmp_path / f"eval_{num_workers}.json"))
        printed = capsys.readouterr().out
        assert "Evaluated 3 of 5 videos (3 captions)." in printed
        assert "2 videos could not be read and were left out with their captions:" in printed
        assert "missing.mp4: FileNotFoundError: " in printed and "corrupt.mp4: VideoDecodingError: " in printed
    metrics = json.loads((tmp_path / "eval_0.json").read_text())
    assert metrics["num_videos"] == metrics["num_texts"] == 3 and metrics["num_unreadable_videos"] == 2
    assert json.loads((tmp_path / "eval_1.json").read_text()) == metrics
    failures = json.loads((tmp_path / "eval_0.failed_videos.json").read_text())
    assert [(failure["video_id"], failure["video"]) for failure in failures] == [
        ("missing.mp4", str(folder / "missing.mp4")), ("corrupt.mp4", str(folder / "corrupt.mp4"))
    ]
    assert failures[0]["error"].startswith("FileNotFoundError: ")
    assert failures[1]["error"].startswith("VideoDecodingError: ")

    # the same evaluation on a jsonl of the readable videos only gives the same figures
    (folder / "readable.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records[:1] + records[2:4]))
    arguments[5] = str(folder / "readable.jsonl")
    evaluate_script(monkeypatch, *arguments, "--output_file", str(tmp_path / "readable.json"))
    assert json.loads((tmp_path / "readable.json").read_text()) == {**metrics, "num_unreadable_videos": 0}


def test_finetuning_leaves_out_unreadable_evaluation_videos(tmp_path, processor):
    torch.manual_seed(0)
    LocVTPModel(make_config()).save_pretrained(tmp_path / "checkpoint")
    processor.save_pretrained(tmp_path / "checkpoint")
    world = SyntheticWorld(seed=3, num_train=0, num_validation=0, num_test=4, size=32)
    folder = world.export(tmp_path / "data", "test")
    captions = world.captions("test")
    records = [{"video": f"{video_id}.mp4", "caption": caption}
               for video_id, caption in zip(captions["video_id"], captions["caption"])]
    (folder / "train.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    evaluation = [*records[:3], {"video": "missing.mp4", "caption": "a square moves"}]  # e.g. a partial download
    (folder / "eval.jsonl").write_text("".join(json.dumps(record) + "\n" for record in evaluation))
    result = run_script(
        "finetune_retrieval.py", tmp_path, "--model_name_or_path", str(tmp_path / "checkpoint"), "--dataset", "jsonl",
        "--train_annotations", str(folder / "train.jsonl"), "--eval_annotations", str(folder / "eval.jsonl"),
        "--video_dir", str(folder), "--output_dir", str(tmp_path / "model"), "--max_steps", "1",
        "--per_device_batch_size", "2", "--num_workers", "0", "--warmup_steps", "0",
    )
    results = json.loads((tmp_path / "model" / "retrieval_results.json").read_text())
    for stage in ("before", "after"):
        assert results[stage]["num_videos"] == results[stage]["num_texts"] == 3
        assert results[stage]["num_unreadable_videos"] == 1
    assert "1 evaluation videos could not be read and were left out with their captions" in result.stderr
    assert "missing.mp4: FileNotFoundError" in result.stderr


def test_a_resumed_finetuning_ends_with_the_same_weights(tmp_path):
    # 8 videos in batches of 4: the step-3 checkpoint is one batch into the second epoch; an evaluation every 2 steps
    # (in the uninterrupted run only) does not change the training
    arguments = ["--model_name_or_path", "new", "--world_train_videos", "8", "--world_test_videos", "4",
                 "--per_device_batch_size", "4", "--max_steps", "5", "--warmup_steps", "1", "--num_workers", "0",
                 "--checkpointing_steps", "3"]
    result = run_script("finetune_retrieval.py", tmp_path, *arguments, "--output_dir", str(tmp_path / "uninterrupted"),
                        "--eval_steps", "2")
    evaluations = [line for line in result.stderr.splitlines() if ": eval_text_to_video_R@1 " in line]
    assert [line.split(" INFO ")[1].split(":")[0] for line in evaluations] == ["step 2", "step 4"]
    checkpoint = tmp_path / "resumed" / "checkpoints" / "step_3"
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoints" / "step_3", checkpoint)
    result = run_script("finetune_retrieval.py", tmp_path, *arguments, "--output_dir", str(tmp_path / "resumed"),
                        "--resume_from_checkpoint", "latest")
    assert f"Resumed from {checkpoint} at step 3" in result.stderr
    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], **CROSS_PROCESS_TOLERANCE, msg=name)

    refused = run_script("finetune_retrieval.py", tmp_path, *arguments, "--output_dir", str(tmp_path / "resumed"),
                         "--learning_rate", "0.5", "--resume_from_checkpoint", str(checkpoint), check=False)
    assert refused.returncode != 0 and "learning_rate 0.0002 -> 0.5" in refused.stderr


def test_finetuning_needs_an_explicit_model(tmp_path):
    result = run_script("finetune_retrieval.py", tmp_path, "--max_steps", "1", check=False)
    assert result.returncode != 0
    assert "Give --model_name_or_path: a LocVTP checkpoint" in result.stderr and "or 'new'" in result.stderr
    assert not (tmp_path / "outputs").exists()
