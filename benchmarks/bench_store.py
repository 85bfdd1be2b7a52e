"""Feature-store benchmark: ingestion, an aggregate SQL query and a full embedding fetch.

Ingests N synthetic DF20-format observations (one image each) and N vectors of
dimension D, then times, as medians over repeats:

- the aggregate query in DuckDB vs the same aggregate in pandas on an
  in-memory DataFrame (baseline);
- fetching all vectors into a float32 numpy array vs pyarrow reading the same
  vectors from a Parquet file (baseline).

- ingesting an embedding Parquet file (``image_path`` + ``embedding``) with
  ``FeatureStore.ingest_embeddings`` vs a raw DuckDB insert of the same file
  (``INSERT INTO t SELECT i.image_id, p.embedding FROM read_parquet(...) p JOIN
  images i USING (image_path)`` into an identical ``FLOAT[d]`` table). Each side
  runs in a fresh process on its own copy of the same store, interleaved, and
  reports its time and its peak RSS above the RSS it had before ingesting.

Ratios are baseline time / store time (> 1: the store is faster), except the
ingest, reported as store time / raw time (target <= 1.0) and peak RSS growth /
vector bytes (target <= 2). Target for the aggregate over 420k observations:
<= 100 ms.

    python benchmarks/bench_store.py            # 420,000 x 1024
    python benchmarks/bench_store.py --small    # 20,000 x 256, well under a minute
    python benchmarks/bench_store.py --ingest-only --n 100000 --dim 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from store import EmbeddingSpace, FeatureStore
from store.reference import substrate_groups

HABITATS = ["Deciduous woodland", "Bog woodland", "Mixed woodland (with coniferous and deciduous "
            "trees)", "park/churchyard", None]
COUNTRIES = ["DK"] * 18 + ["SE", "DE"]


def synthetic_metadata(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(10_000_000, 10_000_000 + n)
    substrates = np.array(list(substrate_groups()), dtype=object)
    month = rng.integers(1, 13, n).astype(object)
    month[rng.random(n) < 0.02] = None
    return pa.table({
        "observationID": ids,
        "year": rng.integers(2000, 2021, n),
        "month": pa.array(month, pa.int64()),
        "day": rng.integers(1, 29, n),
        "countryCode": rng.choice(COUNTRIES, n),
        "Substrate": rng.choice(substrates, n),
        "Habitat": pa.array(rng.choice(np.array(HABITATS, dtype=object), n), pa.string()),
        "Latitude": np.round(rng.uniform(54.5, 57.8, n), 5),
        "Longitude": np.round(rng.uniform(8.0, 12.7, n), 5),
        "CoorUncert": rng.choice([10.0, 100.0, 1000.0], n),
        "image_path": pa.array([f"{i}-1.JPG" for i in ids]),
        "class_id": rng.integers(0, 1604, n),
    })


AGG_SQL = """
SELECT s.poisonous, o.country_code, o.month, count(*) AS n,
       avg(o.latitude) AS lat, count(DISTINCT o.class_id) AS species
FROM observations o JOIN species s USING (class_id)
GROUP BY ALL
"""


def pandas_aggregate(obs: pd.DataFrame, species: pd.DataFrame) -> pd.DataFrame:
    merged = obs.merge(species, on="class_id")
    return (merged.groupby(["poisonous", "country_code", "month"], dropna=False)
            .agg(n=("class_id", "size"), lat=("latitude", "mean"),
                 species=("class_id", "nunique")).reset_index())


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_embedding_file(path: Path, image_paths: pa.Array, dim: int, seed: int = 1) -> None:
    """Vectors as an embedding Parquet file, written in pieces (never all in memory)."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([("image_path", pa.string()),
                        ("embedding", pa.list_(pa.field("element", pa.float32()), dim))])
    step = 16_384
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for start in range(0, len(image_paths), step):
            part = image_paths[start:start + step]
            vecs = rng.standard_normal((len(part), dim), dtype=np.float32)
            emb = pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim)
            writer.write_table(pa.table([part, emb.cast(schema.field(1).type)], schema=schema))


def ingest_child(kind: str, store: str, emb: str, dim: int) -> None:
    """One side of the ingest comparison, in a fresh process; prints JSON."""
    import duckdb
    base = rss_mb()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    if kind == "store":
        with FeatureStore(store) as fs:
            report = fs.ingest_embeddings(emb, "bench")
            rows = report.stored
    else:
        con = duckdb.connect(store)
        con.execute(f"CREATE TABLE raw (image_id BIGINT PRIMARY KEY, vector FLOAT[{dim}] "
                    "NOT NULL)")
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO raw SELECT i.image_id, p.embedding FROM read_parquet(?) p "
                    "JOIN images i USING (image_path)", [emb])
        con.execute("COMMIT")
        rows = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
        con.close()
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": rows, "base_mb": base,
                      "peak_mb": peak}))


def cpu_seconds() -> float:
    """User + system CPU time of this process: less sensitive to other jobs than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ingest_benchmark(tmp: Path, meta_csv: Path, n: int, d: int, repeats: int) -> None:
    """Store ingest vs raw DuckDB insert of one embedding file; interleaved, medians."""
    template = tmp / "template.duckdb"
    with FeatureStore(template) as fs:
        fs.ingest_metadata(meta_csv, role="train")
        paths = fs.sql("SELECT image_path FROM images ORDER BY image_id").column(0)
    emb = tmp / "emb_in.parquet"
    write_embedding_file(emb, paths.combine_chunks(), d)
    vector_mb = n * d * 4 / 2**20
    load_before = f"{os.getloadavg()[0]:.1f}"
    results: dict[str, list[dict]] = {"store": [], "raw": []}
    for r in range(repeats):
        for kind in (("store", "raw") if r % 2 == 0 else ("raw", "store")):
            copy = tmp / f"copy-{kind}.duckdb"
            shutil.copy(template, copy)
            out = subprocess.run(
                [sys.executable, __file__, "--ingest-child", kind, str(copy), str(emb), str(d)],
                check=True, capture_output=True, text=True, env=os.environ)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            assert res["rows"] == n, res
            results[kind].append(res)
            copy.unlink()
            wal = copy.with_name(copy.name + ".wal")
            if wal.exists():
                wal.unlink()

    def med(kind: str, key: str) -> float:
        return statistics.median(x[key] for x in results[kind])

    def growth(kind: str) -> float:
        return statistics.median(x["peak_mb"] - x["base_mb"] for x in results[kind])

    t_store, t_raw = med("store", "seconds"), med("raw", "seconds")
    print(f"ingest embedding Parquet ({n:,} x {d}, {vector_mb:,.0f} MB of vectors, median of "
          f"{repeats}, fresh process each): store {t_store:.2f} s, raw DuckDB insert "
          f"{t_raw:.2f} s, ratio {t_store / t_raw:.2f}x (target <= 1.0)")
    for kind in ("store", "raw"):
        print(f"  {kind:5s}: peak RSS {med(kind, 'peak_mb'):,.0f} MB (before ingest "
              f"{med(kind, 'base_mb'):,.0f} MB), growth {growth(kind):,.0f} MB = "
              f"{growth(kind) / vector_mb:.2f}x the vector bytes (target <= 2)")
    print("  times store: " + ", ".join(f"{x['seconds']:.2f}" for x in results["store"])
          + "; raw: " + ", ".join(f"{x['seconds']:.2f}" for x in results["raw"]))
    c_store, c_raw = med("store", "cpu"), med("raw", "cpu")
    print(f"  CPU time (user + system, median): store {c_store:.2f} s, raw {c_raw:.2f} s, "
          f"ratio {c_store / c_raw:.2f}x; load average before/after: {load_before}, "
          f"{os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=420_000, help="observations (one image each)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="20,000 x 256, 3 repeats")
    parser.add_argument("--ingest-only", action="store_true",
                        help="only the embedding-file ingest comparison")
    parser.add_argument("--ingest-child", nargs=4, metavar=("KIND", "STORE", "FILE", "DIM"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest_child:
        kind, store, emb, dim = args.ingest_child
        ingest_child(kind, store, emb, int(dim))
        return
    if args.small:
        args.n, args.dim, args.repeats = 20_000, 256, 3
    n, d = args.n, args.dim
    print(f"bench_store: {n:,} observations, {d}-d embeddings, median of {args.repeats}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta = synthetic_metadata(n)
        pacsv.write_csv(meta, tmp / "meta.csv")
        ingest_benchmark(tmp, tmp / "meta.csv", n, d, max(3, args.repeats))
        if args.ingest_only:
            return

        with FeatureStore(tmp / "bench.duckdb") as fs:
            t0 = time.perf_counter()
            report = fs.ingest_metadata(tmp / "meta.csv", role="train")
            t_ingest = time.perf_counter() - t0
            t_read, _ = median_time(lambda: pd.read_csv(tmp / "meta.csv"), 1)
            print(f"ingest metadata: {t_ingest:.2f} s ({n / t_ingest:,.0f} rows/s; {report}); "
                  f"pandas read_csv alone {t_read:.2f} s, ratio {t_read / t_ingest:.2f}")

            rng = np.random.default_rng(1)
            ids = fs.sql("SELECT image_id FROM images ORDER BY image_id").column(0).to_numpy()
            fs.ensure_space(EmbeddingSpace("bench", model_id="synthetic", dim=d))
            t0 = time.perf_counter()
            chunk = 50_000
            for start in range(0, n, chunk):
                vecs = rng.standard_normal((min(chunk, n - start), d), dtype=np.float32)
                fs.add_embeddings("bench", ids[start:start + chunk], vecs)
                if start == 0:
                    first = vecs[:3].copy()
            t_add = time.perf_counter() - t0
            print(f"add embeddings: {t_add:.2f} s ({n / t_add:,.0f} vectors/s)")

            # -- aggregate SQL vs pandas ---------------------------------------------------
            obs = fs.sql("SELECT class_id, country_code, month, latitude FROM observations"
                         ).to_pandas()
            species = fs.sql("SELECT class_id, poisonous FROM species").to_pandas()
            t_sql, res_sql = median_time(lambda: fs.sql(AGG_SQL), args.repeats)
            t_pd, res_pd = median_time(lambda: pandas_aggregate(obs, species), args.repeats)
            assert res_sql.num_rows == len(res_pd), (res_sql.num_rows, len(res_pd))
            print(f"aggregate SQL: duckdb {t_sql * 1e3:.1f} ms, pandas {t_pd * 1e3:.1f} ms, "
                  f"ratio {t_pd / t_sql:.2f}x (target <= 100 ms: "
                  f"{'met' if t_sql <= 0.1 else 'missed'})")

            # -- full embedding fetch vs pyarrow Parquet read --------------------------------
            t_fetch, (got_ids, got) = median_time(lambda: fs.fetch_embeddings("bench"),
                                                  args.repeats)
            assert got.shape == (n, d) and np.array_equal(got[:3], first)
            vec_arr = pa.FixedSizeListArray.from_arrays(pa.array(got.reshape(-1)), d)
            pq.write_table(pa.table({"image_id": got_ids, "embedding": vec_arr}),
                           tmp / "emb.parquet", compression="none")
            del got

            def parquet_fetch():
                t = pq.read_table(tmp / "emb.parquet")
                flat = pa.concat_arrays([c.flatten() for c in t.column("embedding").chunks])
                return flat.to_numpy().reshape(-1, d)

            t_pq, _ = median_time(parquet_fetch, args.repeats)
            gb = n * d * 4 / 1e9
            print(f"fetch embeddings: store {t_fetch:.3f} s ({gb / t_fetch:.2f} GB/s), pyarrow "
                  f"Parquet {t_pq:.3f} s, ratio {t_pq / t_fetch:.2f}x")
    print(f"peak memory (RSS): {peak_rss_mb():,.0f} MB; vectors alone {gb * 1e3:,.0f} MB")


if __name__ == "__main__":
    main()
