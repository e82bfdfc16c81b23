"""`examples/ablation.py --quick` end to end: every world, variant and seed is run, measured and summarised (intervals
over seeds, paired differences with the baseline, per-query bootstrap), and a second invocation reuses the finished
runs instead of running them again."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "ablation.py"
sys.path.insert(0, str(SCRIPT.parent))
import pretrain  # noqa: E402
from ablation import VARIANTS, WORLDS, bootstrap_difference, interval  # noqa: E402

from locvtp_hf.training import (  # noqa: E402
    ModelArguments,
    SyntheticWorldArguments,
    TrainingArguments,
    parse_arguments,
    recorded_arguments,
)


def test_the_ablation_measures_summarises_and_resumes(tmp_path):
    command = [
        sys.executable, str(SCRIPT), "--quick", "--output_dir", str(tmp_path), "--worlds", "hard",
        "--variants", "coarse", "full_same_sample", "--seeds", "0", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stderr[-4000:]

    results = json.loads((tmp_path / "ablation_results.json").read_text())
    runs = results["runs"]["hard"]
    assert sorted(runs) == ["coarse", "full_same_sample"]
    for variant, by_seed in runs.items():
        assert sorted(by_seed) == ["0", "1"]
        for key in ("in_video_auc", "zero_shot_R@1,IoU=0.5", "probe_hit_rate", "action_probe_accuracy",
                    "discovery_accuracy", "text_to_video_R@1", "grounding_10%_R@1,IoU=0.5",
                    "validation_in_video_auc"):  # fmt: skip
            values = [run[key] for run in by_seed.values()]
            assert all(0.0 <= value <= 1.0 for value in values), (variant, key, values)
        summary = results["summary"]["hard"][variant]["in_video_auc"]
        assert summary["mean_ci95"] == list(interval([run["in_video_auc"] for run in by_seed.values()]))
    paired = results["summary"]["hard"]["full_same_sample"]["in_video_auc"]
    differences = [runs["full_same_sample"][seed]["in_video_auc"] - runs["coarse"][seed]["in_video_auc"]
                   for seed in ("0", "1")]  # fmt: skip
    assert paired["paired_difference_ci95"][0] == pytest.approx(statistics.mean(differences))
    low, high = paired["bootstrap_difference_ci95"]
    assert low <= high
    last_run = tmp_path / "hard" / "full_same_sample" / "seed_1"
    assert json.loads((last_run / "eval_results.json").read_text())["steps"] == 2
    per_query = json.loads((tmp_path / "hard" / "coarse" / "seed_0" / "measures.json").read_text())["per_query"]
    assert len(per_query["zero_shot_iou"]) == len(per_query["in_video_auc"]) > 0
    table = (tmp_path / "ABLATION.md").read_text()
    assert "| coarse |" in table and "| full_same_sample |" in table and "Paired difference" in table
    # the supervised action ceiling: once per world, from the untrained model of seed 0
    ceiling = results["action_ceiling"]["hard"]
    assert 0.0 <= ceiling["action_ceiling_accuracy"] <= 1.0 and ceiling["action_ceiling_train_loss"] > 0
    assert "Supervised action ceiling" in table

    # a second invocation finds every run finished and only summarises them again
    logs = sorted(tmp_path.rglob("pretrain.log"))
    modified = [log.stat().st_mtime_ns for log in logs]
    second = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert [log.stat().st_mtime_ns for log in logs] == modified
    again = json.loads((tmp_path / "ablation_results.json").read_text())
    assert again["runs"] == results["runs"] and again["action_ceiling"] == results["action_ceiling"]

    # --summarize_only runs nothing: the unfinished seed 2 is left out of the tables
    summary_only = subprocess.run([*command, "2", "--summarize_only"], capture_output=True, text=True, timeout=900,
                                  env=env)  # fmt: skip
    assert summary_only.returncode == 0, summary_only.stderr[-4000:]
    assert not (tmp_path / "hard" / "coarse" / "seed_2").exists()
    assert "seeds [0, 1]" in (tmp_path / "ABLATION.md").read_text()

    # a run folder written with other settings is refused, not mixed into the table
    refused = subprocess.run([*command, "--num_clips", "8"], capture_output=True, text=True, timeout=900, env=env)
    assert refused.returncode != 0
    assert "holds a run with other settings (num_clips 16 -> 8)" in refused.stderr


def test_intervals_and_the_bootstrap():
    mean, half = interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean == 3.0 and half == pytest.approx(2.776 * statistics.stdev([1, 2, 3, 4, 5]) / 5**0.5)
    assert interval([0.4]) == (0.4, 0.0)
    # a constant per-query gain of 0.1 is recovered exactly; NaN queries are left out
    a = [[0.6, 0.7, float("nan"), 0.2]] * 2
    b = [[0.5, 0.6, 0.1, 0.1]] * 2
    assert bootstrap_difference(a, b, samples=200) == pytest.approx([0.1, 0.1])


def test_variants_pin_the_loss_options_and_the_default_run_is_the_chosen_variant(monkeypatch):
    """Every variant spells out the loss options whose pretrain.py defaults may change, and pretrain.py with no
    arguments trains exactly the ablation's `full_mutual_warmup` on the misaligned world at 1,500 steps."""
    options = {"--fine_negatives", "--discovery_stop_words", "--discovery_mutual", "--localization_warmup_steps"}
    for variant, arguments in VARIANTS.items():
        assert options <= set(arguments), variant

    def parsed(*arguments: str) -> dict:
        """The run's arguments, a loss flag not given taking the value a new model gets for it."""
        monkeypatch.setattr(sys, "argv", ["pretrain.py", *arguments])
        groups = (ModelArguments, pretrain.PreTrainingArguments, SyntheticWorldArguments, TrainingArguments)
        recorded = recorded_arguments(parse_arguments(groups, "", pretrain.SCRIPT_DEFAULTS), num_processes=1)
        new_model = {name: value for name, value in pretrain.NEW_MODEL_LOSS_FIELDS.items() if recorded[name] is None}
        return {**recorded, **new_model}

    misaligned = WORLDS["misaligned"]
    world = [
        "--world_persistent_object", str(misaligned["persistent_object"]).lower(),
        "--world_pretraining_span_coverage", str(misaligned["pretraining_span_coverage"]),
    ]  # fmt: skip
    default_run = parsed()
    assert default_run == parsed("--max_steps", "1500", *world, *VARIANTS["full_mutual_warmup"])
    assert default_run != parsed("--max_steps", "1500", *world, *VARIANTS["full_mutual"])


def test_the_loss_flags_fill_a_new_model_and_override_only_what_is_given_on_a_checkpoint(tokenizer):
    nothing_given = pretrain.PreTrainingArguments()
    assert pretrain.pretraining_fields(nothing_given, tokenizer, new_model=False) == {}
    new_model = pretrain.pretraining_fields(nothing_given, tokenizer, new_model=True)
    assert new_model["discovery_mutual"] is True and new_model["discovery_excluded_token_ids"] is None
    assert new_model["temporal_loss_weight"] == 1.0 and new_model["fine_negatives"] == "other_samples"
    given = pretrain.PreTrainingArguments(fine_loss_weight=0.0, discovery_stop_words=True)
    overrides = pretrain.pretraining_fields(given, tokenizer, new_model=False)
    assert overrides.keys() == {"fine_loss_weight", "discovery_excluded_token_ids"}
    assert overrides["fine_loss_weight"] == 0
    assert overrides["discovery_excluded_token_ids"] == pretrain.stop_word_token_ids(tokenizer)
