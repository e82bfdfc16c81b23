"""Benchmark of the searchable video index (`locvtp_hf.retrieval_index`): build time, search latency per query,
recall@k of the approximate indexes against exact search, and peak memory, for 10k, 100k and 1M videos whose
embeddings are random unit vectors of the model's projection dimension.

    python benchmarks/retrieval_index.py [--sizes 10000 100000 1000000] [--dim 256] [--index_types exact ivf hnsw]
        [--num_queries 200] [--k 10] [--data uniform] [--ivf_nprobe 8 32 128] [--hnsw_ef_search 64 128 256]
        [--threads N]

Each (size, index type) runs in a fresh Python process, so that its peak RSS is its own; the search-parameter
sweeps (`--ivf_nprobe`, `--hnsw_ef_search`) reuse one build and add a row per value. Columns:

- build s: `VideoIndex.from_embeddings` (datasets table, FAISS training on a sample when needed, adding vectors).
- ms / query: median and 95th percentile of `index.search(embedding, k)`, one query at a time, as a user would.
- batch queries / s: all queries in one `index.search_batch` call.
- recall@k: share of the exact top-k that the index returns (exact search: 1 by construction, checked).
- RSS GB: resident memory before the build (Python, torch, the vectors and queries) and its peak during the build and
  the searches (Linux `VmHWM`, reset before the build; the sweep's rows share one build, so later rows' peaks
  include the earlier ones').

`--data uniform` (the default) draws data and queries as independent uniform unit vectors: the hardest case for
approximate search, since no structure separates neighbours from the rest. `--data clustered` draws data around
`N / 1000` centres and queries near data points, closer to real embeddings.

`run_benchmark(...)` returns the rows as dicts and `markdown_table(rows)` formats them, for a suite runner.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


SIZES = (10_000, 100_000, 1_000_000)
INDEX_TYPES = ("exact", "ivf", "hnsw")
SWEPT_PARAMETER = {"ivf": "nprobe", "hnsw": "efSearch"}
COLUMNS = {
    "videos": "videos",
    "index": "index",
    "params": "search params",
    "build_s": "build s",
    "latency_ms_median": "ms / query (median)",
    "latency_ms_p95": "ms / query (p95)",
    "batch_queries_per_s": "batch queries / s",
    "recall": "recall@k",
    "rss_before_gb": "RSS before build GB",
    "peak_rss_gb": "peak RSS GB",
}


def _rss_gb(field: str) -> float:
    """`VmRSS` (now) or `VmHWM` (peak) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024**2  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Start a new peak (`VmHWM`) from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def make_vectors(num: int, dim: int, num_queries: int, data: str, seed: int):
    """`(embeddings [num, dim], queries [num_queries, dim])`, float32 unit vectors (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def normalised(vectors):
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    if data == "uniform":
        embeddings = normalised(rng.standard_normal((num, dim), dtype=np.float32))
        return embeddings, normalised(rng.standard_normal((num_queries, dim), dtype=np.float32))
    centres = normalised(rng.standard_normal((max(10, num // 1000), dim), dtype=np.float32))
    noise_scale = np.float32(0.6 / np.sqrt(dim))  # a point's offset from its centre has norm ~0.6
    embeddings = centres[rng.integers(len(centres), size=num)]
    embeddings += noise_scale * rng.standard_normal((num, dim), dtype=np.float32)
    queries = embeddings[rng.choice(num, size=num_queries, replace=False)]
    queries = queries + noise_scale * rng.standard_normal((num_queries, dim), dtype=np.float32)
    return normalised(embeddings), normalised(queries)


def run_case(
    size: int, dim: int, index_type: str, num_queries: int, k: int, data: str, seed: int, sweep: list | None = None
) -> list[dict]:
    """One build of one index type, measured in this process; a row per search setting (`sweep` values)."""
    import faiss
    import numpy as np

    from locvtp_hf.retrieval_index import VideoIndex, nearest_neighbour_recall

    embeddings, queries = make_vectors(size, dim, num_queries, data, seed)
    video_ids = [f"video{row}" for row in range(size)]
    _, exact_rows = faiss.knn(queries, embeddings, k, metric=faiss.METRIC_INNER_PRODUCT)
    exact_ids = [[video_ids[row] for row in rows] for rows in exact_rows]
    _reset_peak_rss()
    rss_before = _rss_gb("VmRSS")

    start = time.perf_counter()
    index = VideoIndex.from_embeddings(embeddings, video_ids, index_type=index_type, seed=seed)
    build_seconds = time.perf_counter() - start
    settings = [{SWEPT_PARAMETER[index_type]: value} for value in sweep] if sweep else [{}]
    rows = []
    for params in settings:
        index.set_search_params(**params)
        for query in queries[:5]:  # warm-up
            index.search(query, k)
        latencies, found = [], []
        for query in queries:
            start = time.perf_counter()
            hits = index.search(query, k)
            latencies.append(time.perf_counter() - start)
            found.append([video_id for video_id, _ in hits])
        start = time.perf_counter()
        index.search_batch(queries, k)
        batch_seconds = time.perf_counter() - start
        rows.append({
            "videos": size,
            "index": index_type,
            "params": ", ".join(f"{name}={value}" for name, value in index.search_params.items()) or "-",
            "build_s": round(build_seconds, 3),
            "latency_ms_median": round(1000 * statistics.median(latencies), 3),
            "latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 3),
            "batch_queries_per_s": round(num_queries / batch_seconds, 1),
            "recall": round(nearest_neighbour_recall(found, exact_ids), 4),
            "rss_before_gb": round(rss_before, 3),
            "peak_rss_gb": round(_rss_gb("VmHWM"), 3),
        })
    return rows


def run_benchmark(
    sizes=SIZES,
    dim: int = 256,
    index_types=INDEX_TYPES,
    num_queries: int = 200,
    k: int = 10,
    data: str = "uniform",
    seed: int = 0,
    ivf_nprobe: list | None = None,
    hnsw_ef_search: list | None = None,
    threads: int | None = None,
) -> list[dict]:
    """Every (size, index type) case, each in a fresh process; returns the table rows."""
    rows = []
    sweeps = {"ivf": ivf_nprobe, "hnsw": hnsw_ef_search}
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    for size in sizes:
        for index_type in index_types:
            case = dict(size=size, dim=dim, index_type=index_type, num_queries=num_queries, k=k, data=data,
                        seed=seed, sweep=sweeps.get(index_type))
            result = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--case", json.dumps(case)],
                capture_output=True, text=True, env=env,
            )
            if result.returncode != 0:
                raise RuntimeError(f"The case {case} failed:\n{result.stderr[-3000:]}")
            rows.extend(json.loads(result.stdout.strip().splitlines()[-1]))
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(row[key]) for key in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(threads: int | None = None) -> str:
    import faiss

    return (
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__}, "
        f"{threads or faiss.omp_get_max_threads()} threads"
    )


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension (the model's projection_dim)")
    parser.add_argument("--index_types", nargs="+", default=list(INDEX_TYPES), choices=list(INDEX_TYPES))
    parser.add_argument("--num_queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--data", choices=["uniform", "clustered"], default="uniform")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ivf_nprobe", type=int, nargs="+", help="nprobe values to sweep (default: the preset's)")
    parser.add_argument("--hnsw_ef_search", type=int, nargs="+", help="efSearch values to sweep (default: preset's)")
    parser.add_argument("--threads", type=int, help="OpenMP threads of FAISS (default: all cores)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print its rows as JSON
    args = parser.parse_args(argv)
    if args.case:
        rows = run_case(**json.loads(args.case))
        print(json.dumps(rows))
        return rows
    for name in ("dim", "num_queries", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if min(args.sizes) < args.k:
        parser.error(f"every size must be at least k ({args.k})")

    print(machine_line(args.threads))
    print(f"{args.data} unit vectors of dimension {args.dim}, {args.num_queries} queries, k={args.k}")
    rows = run_benchmark(
        args.sizes, args.dim, args.index_types, args.num_queries, args.k, args.data, args.seed, args.ivf_nprobe,
        args.hnsw_ef_search, args.threads,
    )
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
