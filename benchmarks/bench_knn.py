"""kNN benchmark: every VectorIndex kind against numpy and DuckDB brute force, same run.

Prints build time, index memory, queries/s (batched and one query at a time),
recall@10 against exact results, and ratios: exact vs numpy matmul+argpartition
(DESIGN target >= 1x) and each approximate kind vs exact (target >= 20x at
recall@10 >= 0.95). Data: seeded clustered unit vectors shaped like DINOv2
features of ~1,600 species.

    python benchmarks/bench_knn.py --small
    python benchmarks/bench_knn.py --n 420000 --dim 1024
    python benchmarks/bench_knn.py --gpu        # adds FAISS GPU numbers when a GPU is visible
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def clustered(n: int, dim: int, n_species: int = 1604, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    genera = rng.normal(size=(max(n_species // 8, 1), dim)).astype(np.float32)
    species = genera[rng.integers(0, len(genera), n_species)] + 0.6 * rng.normal(
        size=(n_species, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 50_000):  # chunks keep peak memory near the output size
        m = min(50_000, n - s)
        out[s:s + m] = species[rng.integers(0, n_species, m)] + 1.3 * rng.standard_normal(
            (m, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def numpy_knn(base: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = q @ base.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def duckdb_qps(base: np.ndarray, q: np.ndarray, k: int) -> float:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    dim = base.shape[1]
    table = pa.table({"id": pa.array(np.arange(len(base))),
                      "v": pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), dim)})
    con.register("t", table)
    con.execute(f"CREATE TABLE vecs AS SELECT id, v::FLOAT[{dim}] AS v FROM t")
    sql = (f"SELECT id FROM vecs ORDER BY array_cosine_similarity(v, ?::FLOAT[{dim}]) DESC LIMIT {k}")

    def run():
        for row in q:
            con.execute(sql, [row.tolist()]).fetchall()
    return len(q) / timed(run, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=420_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--single", type=int, default=50, help="queries timed one at a time")
    p.add_argument("--duckdb-queries", type=int, default=3)
    p.add_argument("--kinds", default="exact,hnsw,ivf_flat,ivf_pq")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--small", action="store_true", help="20,000 x 128: finishes in well under a minute")
    p.add_argument("--gpu", action="store_true", help="also time FAISS on the GPU(s) if visible")
    p.add_argument("--device", default=None,
                   help="also time exact search through PyTorch on this device (cpu, cuda, cuda:1)")
    args = p.parse_args()
    if args.small:
        args.n, args.dim, args.queries, args.single, args.repeats = 20_000, 128, 500, 30, 3

    import faiss

    from retrieval import VectorIndex

    k = 10
    t = time.perf_counter()
    data = clustered(args.n + args.queries, args.dim)
    base, q = data[:args.n], data[args.n:]
    ids = np.arange(args.n, dtype=np.int64)
    print(f"data: {args.n:,} x {args.dim} float32 ({base.nbytes / 2**30:.2f} GiB), "
          f"{args.queries} queries, k={k}; made in {time.perf_counter() - t:.1f} s; "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, GPUs: {faiss.get_num_gpus()}")

    truth = numpy_knn(base, q, k)
    np_batch = args.queries / timed(lambda: numpy_knn(base, q, k), args.repeats)
    np_single = args.single / timed(lambda: [numpy_knn(base, q[i:i + 1], k) for i in range(args.single)],
                                    args.repeats)
    print(f"\n{'method':14} {'build s':>8} {'index MiB':>9} {'batch q/s':>10} {'single q/s':>10} "
          f"{'recall@10':>9}  ratios")
    print(f"{'numpy':14} {'-':>8} {base.nbytes / 2**20:9.0f} {np_batch:10.1f} {np_single:10.1f} {1.0:9.3f}")
    nd = min(args.duckdb_queries, args.queries)
    duck = duckdb_qps(base, q[:nd], k)
    print(f"{'duckdb cosine':14} {'-':>8} {'-':>9} {duck:10.2f} {duck:10.2f} {'-':>9}  "
          f"numpy/duckdb = {np_batch / duck:.0f}x ({nd} queries)")

    results = {}
    use_gpu = args.gpu and faiss.get_num_gpus() > 0
    runs = [(kind, False) for kind in args.kinds.split(",")]
    if use_gpu:
        runs += [(kind, True) for kind in ("exact", "ivf_flat", "ivf_pq")]
    elif args.gpu:
        print("(--gpu: FAISS sees no GPU here; GPU rows skipped)")
    if args.device:
        runs.append(("exact", args.device))
    for kind, on_gpu in runs:
        t = time.perf_counter()
        device = on_gpu if isinstance(on_gpu, str) else None
        on_gpu = on_gpu is True
        index = VectorIndex(args.dim, kind, use_gpu=on_gpu, torch_device=device)
        index.add(ids, base)
        if on_gpu:
            index.search(q[:1], k)  # copies the index to the GPU(s)
        build = time.perf_counter() - t
        mem = faiss.serialize_index(index._index).nbytes / 2**20
        batch = args.queries / timed(lambda index=index: index.search(q, k), args.repeats)
        single = args.single / timed(
            lambda index=index: [index.search(q[i:i + 1], k) for i in range(args.single)], args.repeats)
        rec = recall(index.search(q, k)[1], truth)
        name = kind + (" gpu" if on_gpu else "") + (f" torch:{device}" if device else "")
        results[name] = batch
        if kind == "exact" and not on_gpu and not device:
            ratio = f"exact/numpy = {batch / np_batch:.2f}x batch, {single / np_single:.2f}x single"
        else:
            base_name = "exact gpu" if on_gpu and "exact gpu" in results else "exact"
            ratio = f"{name}/{base_name} = {batch / results.get(base_name, batch):.1f}x batch"
        print(f"{name:14} {build:8.1f} {mem:9.0f} {batch:10.1f} {single:10.1f} {rec:9.3f}  {ratio}")
        del index
    if use_gpu:
        print(f"GPU: {_gpu_name()}")


def _gpu_name() -> str:
    try:
        import subprocess
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    main()
