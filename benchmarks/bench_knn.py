"""kNN benchmark: every VectorIndex kind against exact search, numpy and DuckDB, same run.

Prints build time, index memory, queries/s (batched, and one query at a time with
its median latency), recall@10 against the exact results of the same run, and
ratios: exact vs numpy matmul+argpartition (target >= 1x) and each approximate
kind (and the automatic plan) vs exact (target >= 20x at recall@10 >= 0.95).
Every time is the median of ``--repeats`` (>= 3) runs after a warm-up.

Vector families (``--family``), all L2-normalised:

- ``lowrank``: a Gaussian mixture of 1,604 species in a random 256-d subspace
  of the 1,024 dimensions, power-law spectrum (variance of axis i ~ i^-0.5),
  species spread 0.6 of the between-species spread, plus isotropic noise of
  0.3x the signal's norm: low intrinsic dimension, as real image embeddings have.
- ``hier``: genus -> species -> image clusters in a 128-d subspace with an
  exponential spectrum (variance ~ exp(-i/32)) and noise 0.4x: a second family,
  so settings tuned on ``lowrank`` are checked on a different shape.
- ``iso``: species centres plus strong isotropic noise in all dimensions (the
  hardest case for any approximate index; no intrinsic low dimension).

    python benchmarks/bench_knn.py --small
    python benchmarks/bench_knn.py --n 420000 --dim 1024 --family lowrank
    python benchmarks/bench_knn.py --n 100000 --sweep          # ef_search / nprobe curves
    python benchmarks/bench_knn.py --crossover                 # exact single-query latency by size
    python benchmarks/bench_knn.py --device cpu                # exact search through PyTorch
    python benchmarks/bench_knn.py --gpu                       # FAISS on the GPU(s) when visible
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

FAMILIES = ("lowrank", "hier", "iso")


def make_vectors(family: str, n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors (float32) of one family; see the module docstring."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    if family == "iso":
        n_species = 1604
        genera = rng.normal(size=(max(n_species // 8, 1), dim)).astype(np.float32)
        centres = genera[rng.integers(0, len(genera), n_species)] + 0.6 * rng.normal(
            size=(n_species, dim)).astype(np.float32)
        for s in range(0, n, 50_000):
            m = min(50_000, n - s)
            out[s:s + m] = centres[rng.integers(0, n_species, m)] + 1.3 * rng.standard_normal(
                (m, dim), dtype=np.float32)
    else:
        rank = min(dim, 256 if family == "lowrank" else 128)
        axes = np.arange(1, rank + 1)
        scale = np.sqrt(axes ** -0.5 if family == "lowrank" else np.exp(-axes / 32)).astype(np.float32)
        basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].astype(np.float32)  # (dim, rank)
        if family == "lowrank":
            centres = rng.normal(size=(1604, rank)).astype(np.float32) * scale
        else:
            genera = rng.normal(size=(200, rank)).astype(np.float32) * scale
            centres = genera[rng.integers(0, 200, 1604)] + 0.5 * scale * rng.normal(
                size=(1604, rank)).astype(np.float32)
        spread, noise = (0.6, 0.3) if family == "lowrank" else (0.5, 0.4)
        signal_norm = float(np.sqrt((scale ** 2).sum() * (1 + spread ** 2)))
        for s in range(0, n, 50_000):
            m = min(50_000, n - s)
            z = centres[rng.integers(0, len(centres), m)] + spread * scale * rng.standard_normal(
                (m, rank), dtype=np.float32)
            out[s:s + m] = z @ basis.T + (noise * signal_norm / np.sqrt(dim)) * rng.standard_normal(
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


def measure(index, q: np.ndarray, k: int, n_single: int, repeats: int, truth: np.ndarray):
    """(batch q/s, single q/s, median single-query ms, recall@10) of ``index``."""
    batch = len(q) / timed(lambda: index.search(q, k), repeats)
    single_s = timed(lambda: [index.search(q[i:i + 1], k) for i in range(n_single)], repeats)
    lat = []
    for i in range(n_single):
        t = time.perf_counter()
        index.search(q[i:i + 1], k)
        lat.append(time.perf_counter() - t)
    rec = recall(index.search(q, k)[1], truth)
    return batch, n_single / single_s, 1000 * statistics.median(lat), rec


def crossover(args) -> None:
    """Exact vs HNSW single-query latency by store size (where exact stops being 'fast enough')."""
    from retrieval import VectorIndex

    data = make_vectors(args.family, max(args.crossover_sizes) + 200, args.dim, seed=1)
    q = data[-200:]
    print(f"{'n':>9} {'exact ms':>9} {'hnsw ms':>8} {'hnsw build s':>12} {'recall@10':>9}")
    for n in args.crossover_sizes:
        exact = VectorIndex(args.dim, "exact")
        exact.add(np.arange(n), data[:n])
        truth = exact.search(q, 10)[1]
        e = measure(exact, q, 10, 50, args.repeats, truth)
        t = time.perf_counter()
        hnsw = VectorIndex(args.dim, "hnsw")
        hnsw.add(np.arange(n), data[:n])
        build = time.perf_counter() - t
        h = measure(hnsw, q, 10, 50, args.repeats, truth)
        print(f"{n:9,} {e[2]:9.2f} {h[2]:8.2f} {build:12.1f} {h[3]:9.3f}", flush=True)


def sweep(index, q, k, truth, exact_batch, exact_single, args) -> None:
    """Recall and speed-up along the index's search knob (ef_search or nprobe)."""
    if index.kind == "hnsw":
        knob, values = "ef_search", [16, 24, 32, 48, 64, 96]
    else:
        knob = "nprobe"
        values = [v for v in (2, 4, 6, 8, 12, 16, 24, 32, 64) if v <= index.params["nlist"]]
    for v in values:
        index.set_search_params(**{knob: v})
        batch, single, ms, rec = measure(index, q, k, args.single, args.repeats, truth)
        print(f"  {index.kind:9} {knob}={v:<4} recall@10 {rec:.3f}  batch {batch / exact_batch:5.1f}x  "
              f"single {single / exact_single:5.1f}x ({ms:.2f} ms)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=420_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--family", choices=FAMILIES, default="lowrank")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--single", type=int, default=50, help="queries timed one at a time")
    p.add_argument("--duckdb-queries", type=int, default=3, help="0 skips DuckDB")
    p.add_argument("--kinds", default="exact,auto,hnsw,ivf_flat,ivf_pq",
                   help="'auto' is the index retrieval.choose_plan picks for --n")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--small", action="store_true", help="20,000 x 128: finishes in well under a minute")
    p.add_argument("--sweep", action="store_true", help="also print recall/speed-up per ef_search / nprobe")
    p.add_argument("--crossover", action="store_true", help="only time exact vs HNSW by store size")
    p.add_argument("--crossover-sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[5_000, 10_000, 20_000, 50_000, 100_000])
    p.add_argument("--gpu", action="store_true", help="also time FAISS on the GPU(s) if visible")
    p.add_argument("--device", default=None,
                   help="also time exact search through PyTorch on this device (cpu, cuda, cuda:1)")
    args = p.parse_args()
    if args.repeats < 3:
        p.error("--repeats must be at least 3 (medians of >= 3 runs)")
    if args.small:
        args.n, args.dim, args.queries, args.single = 20_000, 128, 500, 30

    import faiss

    from retrieval import VectorIndex, choose_plan

    if args.crossover:
        crossover(args)
        return
    k = 10
    t = time.perf_counter()
    data = make_vectors(args.family, args.n + args.queries, args.dim)
    base, q = data[:args.n], data[args.n:]
    del data
    ids = np.arange(args.n, dtype=np.int64)
    print(f"data: {args.family}, {args.n:,} x {args.dim} float32 ({base.nbytes / 2**30:.2f} GiB), "
          f"{args.queries} queries, k={k}; made in {time.perf_counter() - t:.1f} s; "
          f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, GPUs: {faiss.get_num_gpus()}; "
          f"medians of {args.repeats} runs")

    np_batch = args.queries / timed(lambda: numpy_knn(base, q, k), args.repeats)
    np_single = args.single / timed(lambda: [numpy_knn(base, q[i:i + 1], k) for i in range(args.single)],
                                    args.repeats)
    print(f"\n{'method':16} {'build s':>8} {'index MiB':>9} {'batch q/s':>10} {'single q/s':>10} "
          f"{'1 query ms':>10} {'recall@10':>9}  ratios")
    print(f"{'numpy':16} {'-':>8} {base.nbytes / 2**20:9.0f} {np_batch:10.1f} {np_single:10.1f} "
          f"{1000 / np_single:10.2f} {'-':>9}")
    if args.duckdb_queries:
        nd = min(args.duckdb_queries, args.queries)
        duck = duckdb_qps(base, q[:nd], k)
        print(f"{'duckdb cosine':16} {'-':>8} {'-':>9} {duck:10.2f} {duck:10.2f} {1000 / duck:10.1f} "
              f"{'-':>9}  numpy/duckdb = {np_batch / duck:.0f}x ({nd} queries)")

    kinds = args.kinds.split(",")
    if "exact" not in kinds:
        kinds.insert(0, "exact")  # the ground truth of every run
    runs = [(kind, False) for kind in ["exact"] + [x for x in kinds if x != "exact"]]
    use_gpu = args.gpu and faiss.get_num_gpus() > 0
    if use_gpu:
        runs += [(kind, True) for kind in ("exact", "ivf_flat", "ivf_pq")]
    elif args.gpu:
        print("(--gpu: FAISS sees no GPU here; GPU rows skipped)")
    if args.device:
        runs.append(("exact", args.device))
    truth = None
    results: dict[str, tuple[float, float]] = {}
    for kind, where in runs:
        device = where if isinstance(where, str) else None
        on_gpu = where is True
        label = kind
        params: dict = {}
        if kind == "auto":
            plan = choose_plan(args.n, k=k)
            kind, params = plan.kind, plan.params
            label = f"auto={kind}"
        t = time.perf_counter()
        index = VectorIndex(args.dim, kind, use_gpu=on_gpu, torch_device=device, **params)
        index.add(ids, base)
        if on_gpu:
            index.search(q[:1], k)  # copies the index to the GPU(s)
        build = time.perf_counter() - t
        mem = faiss.serialize_index(index._index).nbytes / 2**20
        if truth is None:
            truth = index.search(q, k)[1]  # exact results: the ground truth
            rec_np = recall(numpy_knn(base, q, k), truth)
        batch, single, ms, rec = measure(index, q, k, args.single, args.repeats, truth)
        name = label + (" gpu" if on_gpu else "") + (f" torch:{device}" if device else "")
        results[name] = (batch, single)
        if name == "exact":
            ratio = (f"exact/numpy = {batch / np_batch:.2f}x batch, {single / np_single:.2f}x single "
                     f"(numpy recall {rec_np:.3f})")
        else:
            base_name = "exact gpu" if on_gpu and "exact gpu" in results else "exact"
            eb, es = results[base_name]
            ratio = f"{name}/{base_name} = {batch / eb:.1f}x batch, {single / es:.1f}x single"
        print(f"{name:16} {build:8.1f} {mem:9.0f} {batch:10.1f} {single:10.1f} {ms:10.2f} {rec:9.3f}  "
              f"{ratio}", flush=True)
        if args.sweep and kind in ("hnsw", "ivf_flat", "ivf_pq") and label == kind and not on_gpu:
            sweep(index, q, k, truth, results["exact"][0], results["exact"][1], args)
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
