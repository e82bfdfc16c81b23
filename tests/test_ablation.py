"""`examples/ablation.py` end to end at a tiny size: every variant and seed is run and summarised, and a second
invocation reuses the finished runs instead of running them again."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ablation.py"


def test_the_ablation_summarises_every_variant_and_resumes(tmp_path):
    command = [
        sys.executable, str(SCRIPT), "--output_dir", str(tmp_path), "--variants", "no_pretraining", "full",
        "--seeds", "0", "1", "--max_steps", "2", "--world_train_videos", "6", "--world_test_videos", "3",
        "--grounding_batch_size", "4", "--grounding_steps", "2", "--num_workers", "0",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 0, first.stderr[-4000:]

    results = json.loads((tmp_path / "ablation_results.json").read_text())
    assert sorted(results["runs"]) == ["full", "no_pretraining"]
    for variant, by_seed in results["runs"].items():
        assert sorted(by_seed) == ["0", "1"]
        for key in ("grounding_R@1,IoU=0.5", "grounding_mIoU", "probe_hit_rate", "text_to_video_R@1"):
            values = [run[key] for run in by_seed.values()]
            assert all(0.0 <= value <= 1.0 for value in values)
            assert results["summary"][variant][key] == [statistics.mean(values), statistics.stdev(values)]
    assert json.loads((tmp_path / "no_pretraining" / "seed_0" / "eval_results.json").read_text())["steps"] == 0
    assert json.loads((tmp_path / "full" / "seed_1" / "eval_results.json").read_text())["steps"] == 2
    table = (tmp_path / "ABLATION.md").read_text()
    assert "| no_pretraining |" in table and "| full |" in table and "±" in table

    # a second invocation finds every run finished and only summarises them again
    logs = sorted(tmp_path.rglob("pretrain.log"))
    modified = [log.stat().st_mtime_ns for log in logs]
    second = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert [log.stat().st_mtime_ns for log in logs] == modified
    assert json.loads((tmp_path / "ablation_results.json").read_text())["runs"] == results["runs"]
    assert all((run / "timing.json").exists() for run in tmp_path.glob("*/seed_*"))

    # a run folder written with other settings is refused, not mixed into the table
    changed = [*command[:-4], "--grounding_steps", "3", "--num_workers", "0"]
    refused = subprocess.run(changed, capture_output=True, text=True, timeout=600, env=env)
    assert refused.returncode != 0
    assert "holds a run with other settings (grounding_steps 2 -> 3)" in refused.stderr
