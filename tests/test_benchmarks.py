"""The benchmark suite runs: `benchmarks/run_all.py --quick` runs every script's quick mode at tiny sizes, each
table has its rows with positive, finite figures, and RESULTS.md holds the machine and every table."""

import ast
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import data_path  # noqa: E402
from benchmark_utils import flop_counter  # noqa: E402
import grounding  # noqa: E402
import run_all  # noqa: E402
import train_step  # noqa: E402

from locvtp_hf.loss import multi_positive_nce  # noqa: E402


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    output = tmp_path_factory.mktemp("benchmarks") / "RESULTS.md"
    # retrieval_index.py runs its cases in fresh processes (seconds of imports each): tested on its own below
    only = ["train_step", "losses", "data_path", "grounding"]
    results = run_all.main(["--quick", "--device", "cpu", "--output", str(output), "--only", *only])
    return results, output.read_text()


def _numbers(row: dict, columns: list[str]) -> list[float]:
    values = [row[column] for column in columns]
    assert all(isinstance(value, (int, float)) and math.isfinite(value) and value > 0 for value in values), row
    return values


def test_results_file_names_the_machine_and_holds_every_table(suite):
    results, text = suite
    assert text.startswith("# Benchmark results")
    for field in ("| CPU | ", "| RAM | ", "| GPU | none used |", "| software | ", "torch ", "| mode | quick"):
        assert field in text
    for name in ("train_step", "losses", "data_path", "grounding"):
        assert not isinstance(results[name], str), results[name]
        for table in results[name]:
            assert f"## {table.title}\n\n{table.to_markdown()}" in text
    assert "failed" not in text


def test_run_all_takes_the_retrieval_index_rows():
    pytest.importorskip("faiss")
    import retrieval_index

    assert "retrieval_index" in run_all.BENCHMARKS
    # one case in this process (the script's internal --case), to spare the fresh process of the quick run
    case = dict(size=200, dim=16, index_type="exact", num_queries=5, k=5, data="uniform", seed=0)
    (table,) = run_all.run_benchmark("retrieval_index", ["--case", json.dumps(case)])
    (row,) = table.rows
    assert row["videos"] == 200 and row["index"] == "exact" and row["recall@k"] == 1.0
    _numbers(row, ["build s", "ms / query (median)", "batch queries / s"])
    assert table.to_markdown().splitlines()[0] == "| " + " | ".join(retrieval_index.COLUMNS.values()) + " |"


def test_train_step_table(suite):
    (table,) = suite[0]["train_step"]
    (row,) = table.rows
    assert row["config"] == "tiny" and row["batch"] == 4 and row["precision"] == "fp32"
    seconds, samples, gflop, tflops, share, memory = _numbers(
        row, ["s / step", "samples / s", "GFLOP / step", "TFLOP/s", "% of matmul peak", "peak memory (GiB)"]
    )
    assert samples == pytest.approx(4 / seconds) and tflops == pytest.approx(gflop / seconds / 1000)
    assert table.notes[0].startswith("Matrix multiply peak: ")


def test_cpu_attention_flops_are_counted():
    query = torch.randn(2, 4, 16, 8, requires_grad=True)  # batch 2, 4 heads, 16 tokens of 8 channels
    with flop_counter() as counter:
        F.scaled_dot_product_attention(query, query, query).sum().backward()
    one_product = 2 * (2 * 4) * 16 * 16 * 8  # [16, 8] @ [8, 16] per batch and head
    assert counter.get_total_flops() == (2 + 5) * one_product  # 2 products forward, 5 backward


def test_the_in_place_gradient_products_of_the_losses_are_counted():
    samples, queries_per_sample, keys_per_sample, dim = 3, 4, 5, 8
    queries = F.normalize(torch.randn(samples, queries_per_sample, dim), dim=-1).requires_grad_()
    keys = F.normalize(torch.randn(samples, keys_per_sample, dim), dim=-1).requires_grad_()
    key_mask = torch.ones(samples, keys_per_sample, dtype=torch.bool)
    positives = torch.ones(samples, queries_per_sample, keys_per_sample, dtype=torch.bool)
    with flop_counter() as counter:
        loss_sum, _ = multi_positive_nce(queries, keys, key_mask, positives, 0, 0.07, chunk_size=1)
        loss_sum.backward()
    # every query against every key: the logits, and their products with the keys and (in place, accumulating the
    # keys' gradient) with the queries; plus the logits of each sample's own keys, forward and their two gradients
    one_product = 2 * queries_per_sample * keys_per_sample * dim
    assert counter.get_total_flops() == 3 * samples * samples * one_product + 3 * samples * one_product


def test_losses_tables_show_what_chunking_saves(suite):
    times, _, memory = suite[0]["losses"]
    assert [row["global batch"] for row in times.rows] == [row["global batch"] for row in memory.rows] == [32, 64]
    cases = ["coarse", "fine", "temporal", "fine, unchunked", "encoders"]
    for row in times.rows:
        _numbers(row, cases)
        assert 0 < row["losses % of step"] < 100
    small, large = (_numbers(row, cases) for row in memory.rows)
    chunked, unchunked = cases.index("fine"), cases.index("fine, unchunked")
    # chunks of 4 samples: memory doubles with the global batch; all at once, it grows toward 4x as the logits
    # outgrow the per-sample tensors (3x from 32 to 64 samples)
    assert large[chunked] / small[chunked] < 2.2 < 2.8 < large[unchunked] / small[unchunked]
    assert large[chunked] < large[unchunked]
    # the encoders run in micro-batches of one size: twice the global batch, twice their time, the same peak
    assert times.rows[1]["encoders"] == pytest.approx(2 * times.rows[0]["encoders"])
    assert memory.rows[1]["encoders"] == memory.rows[0]["encoders"]


def test_the_losses_floor_table_counts_quadratic_products_below_the_measured_time(suite):
    times, floor, _ = suite[0]["losses"]
    columns = ["fine GFLOP", "temporal GFLOP", "fine % of matmul peak", "temporal % of matmul peak",
               "fine + temporal at matmul peak (ms)", "at matmul peak: fine + temporal % of step"]
    small, large = (_numbers(row, columns) for row in floor.rows)
    # every clip and word is scored against the whole global batch: twice the batch, about four times the products
    # (the products inside each sample grow only twice)
    for term in ("fine GFLOP", "temporal GFLOP"):
        index = columns.index(term)
        assert 3.0 < large[index] / small[index] <= 4.0
    for row, measured in zip(floor.rows, times.rows):
        assert 0 < row["fine % of matmul peak"] < 100 and 0 < row["temporal % of matmul peak"] < 100
        assert row["fine + temporal at matmul peak (ms)"] < measured["fine"] + measured["temporal"]
        assert 0 < row["at matmul peak: fine + temporal % of step"] < measured["fine + temporal % of step"]


def test_data_path_table(suite):
    (table,) = suite[0]["data_path"]
    assert [row["path"] for row in table.rows] == ["after", "resized"]
    for row in table.rows:
        assert row["source"].startswith("synthetic mp4") and row["videos"] == 2 and row["workers"] == 1
        assert row["skipped videos"] == 0
        rate, per_worker, consumed = _numbers(
            row, ["clips / s", "clips / s per worker", "training consumes clips / s"]
        )
        assert per_worker == rate and row["workers to keep up"] == math.ceil(consumed / per_worker)
    # the run_all passed the training step's figure from train_step.py's table
    assert "given with --train_samples_per_second" in table.notes[0]


def test_grounding_tables_compare_sparse_and_dense_maps(suite):
    extraction, latency, memory = suite[0]["grounding"]
    (row,) = extraction.rows
    assert row["config"] == "tiny" and row["clips measured"] == 16  # --quick: 16 s of one-second clips
    seconds, rate, hour, _ = _numbers(row, ["s", "clips / s", "1-hour video (s)", "peak memory (GiB)"])
    assert rate == pytest.approx(16 / seconds) and hour == pytest.approx(3600 / rate)
    assert "extrapolated from 16 clips" in extraction.notes[0]

    layouts = [(32, "sparse"), (32, "dense"), (64, "sparse"), (64, "dense")]
    assert [(row["positions"], row["layout"]) for row in latency.rows] == layouts
    assert [(row["positions"], row["layout"]) for row in memory.rows] == layouts
    for row in latency.rows:
        _numbers(row, ["candidate cells", "GFLOP / query", "ms, 1 query", "ms / query, batch", "queries / s, batch"])
    by_layout = {(row["positions"], row["layout"]): row for row in latency.rows}
    for positions in (32, 64):
        sparse, dense = by_layout[positions, "sparse"], by_layout[positions, "dense"]
        assert dense["candidate cells"] == positions * (positions + 1) // 2 > sparse["candidate cells"]
        # the convolutions run over the whole map: the sparse layout saves candidates, not FLOPs
        assert sparse["GFLOP / query"] == dense["GFLOP / query"]
    # 32 positions, pooling counts [15, 8]: 32 + (31 + ... + 17) on the first 16 diagonals, then every other start on
    # the diagonals 17, 19, ..., 31: 8 + 7 + ... + 1
    assert by_layout[32, "sparse"]["pooling counts"] == "[15, 8]"
    assert by_layout[32, "sparse"]["candidate cells"] == 32 + sum(range(17, 32)) + sum(range(1, 9)) == 428
    for row in memory.rows:
        map_mib, single, batch = _numbers(row, ["map tensor, 1 query (MiB)", "peak, 1 query (MiB)",
                                                "peak, batch (MiB)"])
        assert map_mib == 16 * row["positions"] ** 2 * 4 / 2**20  # 16 channels of fp32
        assert map_mib <= single < batch  # the forward holds at least one whole map; two queries hold more
    assert memory.rows[2]["peak, 1 query (MiB)"] > memory.rows[0]["peak, 1 query (MiB)"]


def test_data_path_reads_real_videos_and_counts_unreadable_ones(real_data, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("carphone_pristine.mp4", "corrupted.mp4"):
        (videos / name).symlink_to(real_data / "videos" / name)
    (table,) = data_path.main(["--quick", "--num_videos", "0", "--real_videos", str(videos), "--device", "cpu",
                               "--train_samples_per_second", "10", "--paths", "after"])
    (row,) = table.rows
    assert row["source"].startswith("real") and row["videos"] == 2
    assert row["skipped videos"] > 0  # corrupted.mp4, drawn in a random order
    _numbers(row, ["clips / s", "clips / s per worker"])
    assert row["training consumes clips / s"] == 10 * 8  # the small configuration's 8 clips per sample


@pytest.mark.parametrize("script", ["benchmark_utils.py", "train_step.py", "losses.py", "grounding.py"])
def test_gpu_benchmarks_import_only_torch_transformers_and_the_model(script):
    """train_step.py, losses.py and grounding.py must run on a GPU machine with torch and transformers but without the data
    stack: they import nothing else beyond the package's model, loss and config modules."""
    allowed = {"torch", "transformers", "benchmark_utils", "train_step", *sys.stdlib_module_names}
    allowed_package_modules = {
        "locvtp_hf", "locvtp_hf.loss", "locvtp_hf.modeling_locvtp", "locvtp_hf.configuration_locvtp"
    }
    tree = ast.parse((BENCHMARKS / script).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            continue
        for name in names:
            assert name.split(".")[0] in allowed or name in allowed_package_modules, f"{script} imports {name}"


def test_bad_arguments_are_reported_in_the_users_terms(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("LOCVTP_REAL_DATA", raising=False)
    with pytest.raises(SystemExit):
        data_path.main(["--num_videos", "0"])
    assert "no videos: give --num_videos above 0 or --real_videos" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_path.main(["--real_videos", str(tmp_path)])
    assert f"--real_videos {tmp_path} holds no video file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_step.main(["--batch_size", "0"])
    assert "--batch_size must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        grounding.main(["--seconds", "0.5"])
    assert "--seconds 0.5 is shorter than one clip of --clip_seconds 1.0" in capsys.readouterr().err


def test_a_benchmark_that_cannot_run_does_not_stop_the_others(monkeypatch, tmp_path):
    def run_benchmark(name, arguments):
        if name == "train_step":
            raise ModuleNotFoundError("No module named 'av'", name="av")
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(run_all, "run_benchmark", run_benchmark)
    output = tmp_path / "RESULTS.md"
    results = run_all.main(["--device", "cpu", "--output", str(output), "--only", "train_step", "losses"])
    assert results == {
        "train_step": "not run: it needs the `av` package, which is not installed here",
        "losses": "failed: RuntimeError: CUDA error: an illegal memory access was encountered",
    }
    text = output.read_text()
    assert "## train_step\n\nNot run: it needs the `av` package, which is not installed here." in text
    assert "## losses\n\nFailed: RuntimeError: CUDA error: an illegal memory access was encountered." in text
