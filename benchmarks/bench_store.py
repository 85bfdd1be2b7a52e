"""Feature-store benchmark: ingestion, an aggregate SQL query and a full embedding fetch.

Ingests N synthetic DF20-format observations (one image each) and N vectors of
dimension D, then times, as medians over repeats:

- the aggregate query in DuckDB vs the same aggregate in pandas on an
  in-memory DataFrame (baseline);
- fetching all vectors into a float32 numpy array vs pyarrow reading the same
  vectors from a Parquet file (baseline).

Ratios are baseline time / store time (> 1: the store is faster). Targets
(DESIGN §7): aggregate over 420k observations <= 100 ms.

    python benchmarks/bench_store.py            # 420,000 x 1024
    python benchmarks/bench_store.py --small    # 20,000 x 256, well under a minute
"""

from __future__ import annotations

import argparse
import resource
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=420_000, help="observations (one image each)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="20,000 x 256, 3 repeats")
    args = parser.parse_args()
    if args.small:
        args.n, args.dim, args.repeats = 20_000, 256, 3
    n, d = args.n, args.dim
    print(f"bench_store: {n:,} observations, {d}-d embeddings, median of {args.repeats}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meta = synthetic_metadata(n)
        pacsv.write_csv(meta, tmp / "meta.csv")

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
