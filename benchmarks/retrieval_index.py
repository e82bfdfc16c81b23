"""Benchmark of the searchable video index (`locvtp_hf.retrieval_index`) at 100k and 1M videos: build time, search
latency per query (one at a time and in a batch), recall@k against float32 brute force, and memory, before and after
the compressed storages, the matrix-product scan and the float32 rerank, on uniform random and on clustered
embeddings, beside the floors that the machine's measured memory bandwidth and matrix-multiply peak imply.

    python benchmarks/retrieval_index.py                       # 100k and 1M, both data kinds: about 7 minutes
    python benchmarks/retrieval_index.py --quick               # tiny sizes: checks that it works, measures nothing
    python benchmarks/retrieval_index.py [--sizes 100000 1000000] [--data uniform clustered] [--dim 256]
        [--index_types exact-before exact exact:float16 exact:int8 ivf ivf:int8] [--num_queries 200]
        [--latency_queries 20] [--k 10] [--rerank 100] [--ivf_nprobe ...] [--hnsw_ef_search ...] [--threads N]

Index types (`--index_types`), each `TYPE[:STORAGE]` (storage `float32` when left out):

- `exact-before`: the float32 exact index searched as before the compressed storages, every batch by FAISS's
  `IndexFlatIP` (the "before" row of exact search).
- `exact`, `exact:float16`, `exact:int8`: `VideoIndex(index_type="exact", storage=...)`: batches of 16 queries or
  more are matrix products over blocks of rows, and the compressed storages re-score a shortlist of `--rerank`
  candidates with the float32 embeddings.
- `ivf` (the preset, "before"), `ivf:int8` (after: `IVF{nlist},SQ8` plus the float32 rerank), `hnsw`,
  `hnsw:int8`, ...: the approximate indexes. `ivf:*` with compressed storage sweeps `nprobe` (8 to 256) unless
  `--ivf_nprobe` is given; the presets run at their defaults. HNSW runs up to `--hnsw_max_size` videos (its build
  at 1M takes longer than this benchmark's budget on a few cores).

Data (`--data`, each size runs both by default):

- `uniform`: data and queries independent uniform unit vectors, the worst case of approximate search (no structure
  separates the neighbours from the rest).
- `clustered`: a mixture of `N / 500` Gaussian clusters whose centres are uniform on the sphere; a video is
  `normalise(centre + offset)` with an offset of norm about `--spread` (1.0); a query is a held-out point of the
  mixture (drawn like the data, not indexed) plus noise of norm about `--query_noise` (0.5). The parameters are
  printed.

Each (size, data) group runs in a fresh Python process, which draws the vectors and the float32 brute-force top-k
once (`faiss.knn`); its index types are built one after the other in it. Columns:

- build s: `VideoIndex.from_embeddings` (datasets table, FAISS training on a sample when needed, adding vectors).
- ms / query (median, p95): `index.search(embedding, k)` one query at a time, as a user would, over the first
  `--latency_queries` queries.
- batch ms / query, batch queries / s: all `--num_queries` queries in one `index.search_batch` call.
- recall@k: share of the float32 brute-force top-k that the batch search returns.
- scan floor ms: the bytes the exact index reads per scan (N x D x 4, 2 or 1) over the measured memory bandwidth:
  the floor of a one-query exact search; the floor of a batch is the larger of that over the batch size and the
  matrix-multiply time (printed above the table).
- RSS before build GB / peak RSS GB: resident memory before the build and its peak during build and searches
  (Linux `VmHWM`, reset before each build).

`run_benchmark(...)` returns the rows as dicts and `markdown_table(rows)` formats them, for a suite runner.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from benchmark_utils import format_value, matmul_peak_flops


SIZES = (100_000, 1_000_000)
DATA_KINDS = ("uniform", "clustered")
INDEX_TYPES = ("exact-before", "exact", "exact:float16", "exact:int8", "ivf", "ivf:int8")
KNOWN_TYPES = ("exact-before", "exact", "ivf", "hnsw")
STORAGE_BYTES = {"float32": 4, "float16": 2, "int8": 1}
SWEPT_PARAMETER = {"ivf": "nprobe", "hnsw": "efSearch"}
COMPRESSED_SWEEP = {"ivf": [8, 16, 32, 64, 128, 256], "hnsw": [64, 128, 256]}
SPREAD, QUERY_NOISE = 1.0, 0.5
HNSW_MAX_SIZE = 200_000
VIDEOS_PER_CLUSTER = 500
COLUMNS = {
    "videos": "videos",
    "data": "data",
    "index": "index",
    "storage": "storage",
    "params": "search params",
    "build_s": "build s",
    "latency_ms_median": "ms / query (median)",
    "latency_ms_p95": "ms / query (p95)",
    "batch_ms_per_query": "batch ms / query",
    "batch_queries_per_s": "batch queries / s",
    "recall": "recall@k",
    "scan_floor_ms": "scan floor ms",
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


def parse_index_type(name: str) -> tuple[str, str]:
    """`"TYPE[:STORAGE]"` as `(type, storage)`."""
    index_type, _, storage = name.partition(":")
    storage = storage or "float32"
    if index_type not in KNOWN_TYPES or storage not in STORAGE_BYTES or (index_type == "exact-before" and
                                                                          storage != "float32"):
        raise ValueError(
            f"Unknown index type {name!r}: TYPE[:STORAGE] with TYPE in {KNOWN_TYPES} and STORAGE in "
            f"{tuple(STORAGE_BYTES)} (exact-before is float32 only)."
        )
    return index_type, storage


def clustered_parameters(num: int, dim: int, spread: float, query_noise: float) -> str:
    num_clusters = max(10, num // VIDEOS_PER_CLUSTER)
    return (
        f"clustered: {num_clusters} Gaussian clusters, centres uniform on the {dim}-d unit sphere, videos assigned "
        f"uniformly at random (about {num // num_clusters} each); video = normalise(centre + N(0, {spread}^2/{dim} "
        f"I)), offset norm ~{spread} (cosine ~{1 / (1 + spread**2) ** 0.5:.2f} to its centre); query = "
        f"normalise(held-out video of the mixture + N(0, {query_noise}^2/{dim} I))"
    )


def make_vectors(num: int, dim: int, num_queries: int, data: str, seed: int, spread: float = SPREAD,
                 query_noise: float = QUERY_NOISE):
    """`(embeddings [num, dim], queries [num_queries, dim])`, float32 unit vectors (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def normalised(vectors):
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    if data == "uniform":
        embeddings = normalised(rng.standard_normal((num, dim), dtype=np.float32))
        return embeddings, normalised(rng.standard_normal((num_queries, dim), dtype=np.float32))
    centres = normalised(rng.standard_normal((max(10, num // VIDEOS_PER_CLUSTER), dim), dtype=np.float32))
    points = centres[rng.integers(len(centres), size=num + num_queries)]
    points += np.float32(spread / np.sqrt(dim)) * rng.standard_normal(points.shape, dtype=np.float32)
    points = normalised(points)
    embeddings, held_out = points[:num], points[num:]
    queries = held_out + np.float32(query_noise / np.sqrt(dim)) * rng.standard_normal(held_out.shape,
                                                                                       dtype=np.float32)
    return embeddings, normalised(queries)


def _search_before(index, queries, k: int) -> list[list[str]]:
    """What `search_batch` did before the compressed storages: FAISS for every batch, its scores as they are."""
    _, rows = index.faiss_index.search(queries, k)
    return [index._ids.take(query_rows[query_rows >= 0]).to_pylist() for query_rows in rows]


def measure_index(embeddings, queries, exact_ids, video_ids, name: str, k: int, seed: int, latency_queries: int,
                  rerank: int, sweep: list | None, bandwidth_gbs: float | None) -> list[dict]:
    """One build of one index type in this process; a row per search setting (`sweep` values)."""
    import numpy as np

    from locvtp_hf.retrieval_index import VideoIndex, nearest_neighbour_recall

    index_type, storage = parse_index_type(name)
    gc.collect()
    _reset_peak_rss()
    rss_before = _rss_gb("VmRSS")
    start = time.perf_counter()
    index = VideoIndex.from_embeddings(embeddings, video_ids, index_type="exact" if index_type == "exact-before"
                                       else index_type, seed=seed, storage=storage, rerank=rerank)
    build_seconds = time.perf_counter() - start

    def search_batch(batch) -> list[list[str]]:
        if index_type == "exact-before":
            return _search_before(index, batch, k)
        return [[video_id for video_id, _ in hits] for hits in index.search_batch(batch, k)]

    def search_one(query) -> list[str]:
        if index_type == "exact-before":
            return _search_before(index, query[None], k)[0]
        return [video_id for video_id, _ in index.search(query, k)]

    floor = None
    if index_type in ("exact", "exact-before") and bandwidth_gbs:
        floor = len(embeddings) * embeddings.shape[1] * STORAGE_BYTES[storage] / bandwidth_gbs / 1e6
    settings = [{SWEPT_PARAMETER[index_type]: value} for value in sweep] if sweep else [{}]
    rows = []
    for params in settings:
        index.set_search_params(**params)
        for query in queries[:2]:  # warm-up
            search_one(query)
        latencies = []
        for query in queries[:latency_queries]:
            start = time.perf_counter()
            search_one(query)
            latencies.append(time.perf_counter() - start)
        start = time.perf_counter()
        found = search_batch(queries)
        batch_seconds = time.perf_counter() - start
        rows.append({
            "videos": len(embeddings),
            "data": None,
            "index": index_type,
            "storage": storage,
            "params": ", ".join([f"{key}={value}" for key, value in index.search_params.items()]
                                + ([f"rerank={rerank}"] if storage != "float32" else [])) or "-",
            "build_s": round(build_seconds, 3),
            "latency_ms_median": round(1000 * statistics.median(latencies), 3),
            "latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 3),
            "batch_ms_per_query": round(1000 * batch_seconds / len(queries), 3),
            "batch_queries_per_s": round(len(queries) / batch_seconds, 1),
            "recall": round(nearest_neighbour_recall(found, exact_ids), 4),
            "scan_floor_ms": None if floor is None else round(floor, 3),
            "rss_before_gb": round(rss_before, 3),
            "peak_rss_gb": round(_rss_gb("VmHWM"), 3),
        })
    return rows


def run_group(size: int, dim: int, data: str, index_types: list[str], num_queries: int, k: int, seed: int,
              latency_queries: int, rerank: int, ivf_nprobe: list | None, hnsw_ef_search: list | None,
              bandwidth_gbs: float | None, spread: float = SPREAD, query_noise: float = QUERY_NOISE) -> list[dict]:
    """Every index type of one (size, data) in this process, on one draw of the vectors and one brute force."""
    import faiss

    embeddings, queries = make_vectors(size, dim, num_queries, data, seed, spread, query_noise)
    video_ids = [f"video{row}" for row in range(size)]
    _, exact_rows = faiss.knn(queries, embeddings, k, metric=faiss.METRIC_INNER_PRODUCT)  # float32 brute force
    exact_ids = [[video_ids[row] for row in rows] for rows in exact_rows]
    given = {"ivf": ivf_nprobe, "hnsw": hnsw_ef_search}
    rows = []
    for name in index_types:
        index_type, storage = parse_index_type(name)
        sweep = given.get(index_type) or (COMPRESSED_SWEEP.get(index_type) if storage != "float32" else None)
        for row in measure_index(embeddings, queries, exact_ids, video_ids, name, k, seed, latency_queries, rerank,
                                 sweep, bandwidth_gbs):
            rows.append({**row, "data": data})
    return rows


def run_case(size: int, dim: int, index_type: str, num_queries: int, k: int, data: str, seed: int,
             sweep: list | None = None) -> list[dict]:
    """One index type at one size in this process (drawing its own vectors): the rows of `run_group`."""
    hnsw_ef_search = sweep if index_type.startswith("hnsw") else None
    return run_group(size, dim, data, [index_type], num_queries, k, seed, num_queries, 100,
                     sweep if index_type.startswith("ivf") else None, hnsw_ef_search, None)


def memory_bandwidth_gbs(gigabytes: float = 1.0, repeats: int = 3) -> tuple[float, float]:
    """`(read, copy)` GB/s: the fastest sum of a `gigabytes` float32 array, and copy of it (read + write)."""
    import torch

    a = torch.ones(int(gigabytes * 1e9 / 4))
    b = torch.empty_like(a)
    read = copy = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a.sum()
        read = min(read, time.perf_counter() - start)
        start = time.perf_counter()
        b.copy_(a)
        copy = min(copy, time.perf_counter() - start)
    return gigabytes / read, 2 * gigabytes / copy


def floors_text(sizes, dim: int, num_queries: int, bandwidth: tuple[float, float], matmul_flops: float) -> str:
    read, copy = bandwidth
    lines = [
        f"memory bandwidth: {read:.1f} GB/s read (sum of a 1 GB float32 array), {copy:.1f} GB/s copy (read + write); "
        f"matrix multiply peak {matmul_flops / 1e9:.0f} GFLOP/s (fp32, 2048 x 2048)"
    ]
    for size in sizes:
        scans = ", ".join(
            f"{storage} {size * dim * nbytes / 1e9:.3g} GB -> {size * dim * nbytes / read / 1e6:.3g} ms"
            for storage, nbytes in STORAGE_BYTES.items()
        )
        compute = 2 * size * dim / matmul_flops * 1e3
        lines.append(
            f"floor of one exact scan of {size:,} x {dim} at that bandwidth: {scans}; a batch of {num_queries} "
            f"queries reads it once, and its inner products take at least {compute:.3g} ms per query at the peak"
        )
    return "\n".join(lines)


def run_benchmark(
    sizes=SIZES,
    dim: int = 256,
    index_types=INDEX_TYPES,
    num_queries: int = 200,
    k: int = 10,
    data=DATA_KINDS,
    seed: int = 0,
    ivf_nprobe: list | None = None,
    hnsw_ef_search: list | None = None,
    threads: int | None = None,
    latency_queries: int = 20,
    rerank: int = 100,
    hnsw_max_size: int = HNSW_MAX_SIZE,
    bandwidth_gbs: float | None = None,
    in_process: bool = False,
    spread: float = SPREAD,
    query_noise: float = QUERY_NOISE,
) -> list[dict]:
    """Every (size, data) group, each in a fresh process unless `in_process`; returns the table rows."""
    data = [data] if isinstance(data, str) else list(data)
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    rows = []
    for size in sizes:
        types = [name for name in index_types if not (name.startswith("hnsw") and size > hnsw_max_size)]
        for kind in data:
            group = dict(size=size, dim=dim, data=kind, index_types=types, num_queries=num_queries, k=k, seed=seed,
                         latency_queries=min(latency_queries, num_queries), rerank=rerank, ivf_nprobe=ivf_nprobe,
                         hnsw_ef_search=hnsw_ef_search, bandwidth_gbs=bandwidth_gbs, spread=spread,
                         query_noise=query_noise)
            if in_process:
                rows.extend(run_group(**group))
                continue
            result = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--group", json.dumps(group)],
                capture_output=True, text=True, env=env,
            )
            if result.returncode != 0:
                raise RuntimeError(f"The group {group} failed:\n{result.stderr[-3000:]}")
            group_rows = json.loads(result.stdout.strip().splitlines()[-1])
            print(markdown_table(group_rows, header=not rows), flush=True)
            rows.extend(group_rows)
    return rows


def markdown_table(rows: list[dict], header: bool = True) -> str:
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)] if header else []
    lines += ["| " + " | ".join(format_value(row[key]) for key in COLUMNS) + " |" for row in rows]
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
    parser.add_argument("--index_types", nargs="+", default=list(INDEX_TYPES), help="TYPE[:STORAGE], see above")
    parser.add_argument("--data", nargs="+", choices=list(DATA_KINDS), default=list(DATA_KINDS))
    parser.add_argument("--num_queries", type=int, default=200)
    parser.add_argument("--latency_queries", type=int, default=20, help="queries timed one at a time")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--rerank", type=int, default=100, help="shortlist re-scored in float32 (compressed storage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread", type=float, default=SPREAD, help="clustered: norm of a video's offset")
    parser.add_argument("--query_noise", type=float, default=QUERY_NOISE, help="clustered: norm of a query's noise")
    parser.add_argument("--ivf_nprobe", type=int, nargs="+", help="nprobe values to sweep (every ivf index type)")
    parser.add_argument("--hnsw_ef_search", type=int, nargs="+", help="efSearch values to sweep (every hnsw type)")
    parser.add_argument("--hnsw_max_size", type=int, default=HNSW_MAX_SIZE, help="largest size that builds HNSW")
    parser.add_argument("--threads", type=int, help="OpenMP threads of FAISS and numpy (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, in this process: checks that it works")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one index type, its rows as JSON
    parser.add_argument("--group", help=argparse.SUPPRESS)  # internal: one (size, data) group, its rows as JSON
    args = parser.parse_args(argv)
    if args.case or args.group:
        rows = run_case(**json.loads(args.case)) if args.case else run_group(**json.loads(args.group))
        print(json.dumps(rows))
        return rows
    if args.quick:
        args.sizes, args.dim, args.num_queries, args.latency_queries = [2000], 16, 20, 3
        args.index_types = [*INDEX_TYPES, "hnsw", "hnsw:int8"]
        args.ivf_nprobe, args.hnsw_ef_search = args.ivf_nprobe or [8], args.hnsw_ef_search or [32]
    for name in ("dim", "num_queries", "k", "rerank", "latency_queries"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive")
    if min(args.sizes) < args.k:
        parser.error(f"every size must be at least k ({args.k})")
    for name in args.index_types:
        try:
            parse_index_type(name)
        except ValueError as error:
            parser.error(str(error))

    start = time.perf_counter()
    print(machine_line(args.threads))
    print(f"{args.num_queries} queries (one at a time: the first {min(args.latency_queries, args.num_queries)}), "
          f"k={args.k}, dimension {args.dim}, rerank shortlist {args.rerank}")
    if "clustered" in args.data:
        for size in args.sizes:
            print(clustered_parameters(size, args.dim, args.spread, args.query_noise))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bandwidth = memory_bandwidth_gbs(0.1 if args.quick else 1.0)
    import torch

    print(floors_text(args.sizes, args.dim, args.num_queries, bandwidth,
                      matmul_peak_flops(torch.device("cpu"), "fp32", 2048)))
    skipped = [size for size in args.sizes if size > args.hnsw_max_size]
    if not any(name.startswith("hnsw") for name in args.index_types):
        print("HNSW is not in this run (the default leaves it out: its build takes about 25 s at 100k on 2 cores, and "
              "at 1M alone longer than this benchmark's budget): add hnsw or hnsw:int8 to --index_types for sizes up "
              "to --hnsw_max_size")
    elif skipped:
        print(f"HNSW not built at {skipped}: its build alone (about 25 s at 100k on 2 cores, growing faster than "
              f"linearly) exceeds this benchmark's budget; raise --hnsw_max_size to run it")
    rows = run_benchmark(
        args.sizes, args.dim, args.index_types, args.num_queries, args.k, args.data, args.seed, args.ivf_nprobe,
        args.hnsw_ef_search, args.threads, args.latency_queries, args.rerank, args.hnsw_max_size, bandwidth[0],
        in_process=args.quick, spread=args.spread, query_noise=args.query_noise,
    )
    if args.quick:
        print(markdown_table(rows))
    print(f"total {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
