"""Runs the benchmark suite and writes its tables, with the machine they ran on, to `benchmarks/RESULTS.md`.

    python benchmarks/run_all.py [--quick] [--device auto|cpu|cuda] [--output benchmarks/RESULTS.md]
        [--only train_step losses data_path retrieval_index grounding]

The suite: `train_step.py` (training step throughput and FLOP/s against the matrix multiply peak), `losses.py` (the
LocVTP losses against the encoders as the global batch grows), `data_path.py` (clips decoded per second per
DataLoader worker against what the training step consumes; it is given the small configuration's samples/s from
`train_step.py`), `retrieval_index.py` (search latency and recall of the video index) when it is there, and
`grounding.py` (clip feature extraction of a 1-hour video, latency and map memory of the grounding head). Each runs
with its own defaults for the device, or with `--quick`: tiny sizes that check the scripts work in a minute and
measure nothing worth reading. A benchmark whose dependencies are missing (e.g. `av`, `datasets` or `faiss` on a GPU
machine with only torch and transformers) or that fails is reported as such in the file and the others still run;
the file is rewritten after each benchmark, so an interrupted run keeps what it finished.
"""

import argparse
import importlib
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from benchmark_utils import Table, machine_description, pick_device


BENCHMARKS = ["train_step", "losses", "data_path", "retrieval_index", "grounding"]
QUICK_ARGUMENTS = {
    "train_step": ["--quick"],
    "losses": ["--quick"],
    "data_path": ["--quick"],
    "retrieval_index": ["--sizes", "1000", "--index_types", "exact", "--num_queries", "10"],
    "grounding": ["--quick"],
}


def run_benchmark(name: str, arguments: list[str]) -> list[Table]:
    """Imports `benchmarks/<name>.py` and runs its `main(arguments)`: its tables."""
    module = importlib.import_module(name)
    if name != "retrieval_index":
        return module.main(arguments)
    rows = module.main(arguments)  # dicts keyed by its COLUMNS' keys
    return [
        Table(
            title="Retrieval index: build time, search latency and recall",
            columns=list(module.COLUMNS.values()),
            rows=[{module.COLUMNS[key]: value for key, value in row.items()} for row in rows],
        )
    ]


def data_path_step_arguments(train_step_tables: list[Table]) -> list[str]:
    """`data_path.py`'s `--config` and `--train_samples_per_second` from the small (else tiny) configuration's row of
    `train_step.py`'s table, so that it need not measure the step again."""
    measured = {row["config"]: row["samples / s"] for row in train_step_tables[0].rows if "samples / s" in row}
    for config in ("small", "tiny"):
        if isinstance(measured.get(config), float):
            return ["--config", config, "--train_samples_per_second", str(measured[config])]
    return []


def write_results(path: Path, command: str, machine: dict, sections: list[str]) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. See `docs/benchmarks.md` for "
        "what each table measures.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in machine.items()),
    ]
    path.write_text("\n".join(lines + sections) + "\n")


def main(argv: list[str] | None = None) -> dict[str, list[Table] | str]:
    """Returns each benchmark's tables, or the reason it did not run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the suite works")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--output", default=str(Path(__file__).with_name("RESULTS.md")), help="the markdown file")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    command = " ".join(["python benchmarks/run_all.py", *(argv if argv is not None else sys.argv[1:])])
    machine = machine_description(device)
    if args.quick:
        machine["mode"] = "quick: tiny sizes that check the scripts work; the figures are not measurements"
    output = Path(args.output)

    results, sections = {}, []
    for name in args.only:
        arguments = QUICK_ARGUMENTS[name] if args.quick else []
        if name != "retrieval_index":
            arguments = [*arguments, "--device", str(device)]
        if name == "data_path" and isinstance(results.get("train_step"), list):
            arguments += data_path_step_arguments(results["train_step"])
        print(f"\n=== {name} {' '.join(arguments)}", flush=True)
        if not (Path(__file__).parent / f"{name}.py").exists():
            results[name] = f"not run: benchmarks/{name}.py is not in this checkout"
        else:
            try:
                results[name] = run_benchmark(name, arguments)
            except ModuleNotFoundError as error:
                results[name] = f"not run: it needs the `{error.name}` package, which is not installed here"
            except Exception as error:  # one failing benchmark must not lose the others' figures
                traceback.print_exc()
                results[name] = f"failed: {type(error).__name__}: {error}"
        if isinstance(results[name], str):
            sections += ["", f"## {name}", "", results[name][0].upper() + results[name][1:] + "."]
            print(results[name], flush=True)
        else:
            for table in results[name]:
                sections += ["", f"## {table.title}", "", table.to_markdown()]
        write_results(output, command, machine, sections)
    print(f"\nWrote {output}")
    return results


if __name__ == "__main__":
    results = main()
    sys.exit(1 if any(isinstance(result, str) and result.startswith("failed") for result in results.values()) else 0)
