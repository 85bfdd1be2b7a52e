"""Report benchmark: `sporeprint report` on a large synthetic store vs a plain count(*) scan.

Builds (through the store's own API) a store of N observations, one image and one
D-dimensional vector each: a long-tailed class distribution over the 1,604 DF20 classes,
vectors clustered by class; 85% role train, 10% val (a third of it unknown species), 5% a
scored batch of role new with predictions, and a labelled batch of validation predictions;
two fold runs, their ensemble and a calibration record. Then times, interleaved and as medians over repeats:

- the baseline: ``SELECT count(*) FROM observations`` on the same store;
- the whole report (every section, samples at their defaults) written to HTML.

Prints both times, their ratio and the time per section of the last report. Target:
under a minute for a 420,000-observation store on 2 cores.

    python benchmarks/bench_report.py                     # 420,000 x 1024
    python benchmarks/bench_report.py --small             # 20,000 x 256
    python benchmarks/bench_report.py --store big.duckdb  # build once, reuse on later runs
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")  # the target machine has 2 cores

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from sporeprint.report import ReportOptions, build_report  # noqa: E402
from sporeprint.scoring.calibration import record_id  # noqa: E402
from store import EmbeddingSpace, FeatureStore, reports  # noqa: E402
from store.reference import poison_status  # noqa: E402

N_CLASSES = 1604
REGIONS = ["Hovedstaden", "Midtjylland", "Syddanmark", "Sjælland", "Nordjylland", None]
HABITATS = ["Deciduous woodland", "Mixed woodland", "park/churchyard", "Bog", None]


def _metadata(ids: np.ndarray, class_id: np.ndarray | None, rng) -> pa.Table:
    n = len(ids)
    month = rng.integers(1, 13, n).astype(object)
    month[rng.random(n) < 0.03] = None
    cols = {
        "observationID": ids,
        "year": rng.integers(2000, 2022, n),
        "month": pa.array(month, pa.int64()),
        "day": rng.integers(1, 29, n),
        "countryCode": rng.choice(np.array(["DK"] * 19 + ["SE"], dtype=object), n),
        "level1Name": pa.array(rng.choice(np.array(REGIONS, dtype=object), n), pa.string()),
        "Habitat": pa.array(rng.choice(np.array(HABITATS, dtype=object), n), pa.string()),
        "Latitude": np.round(rng.uniform(54.5, 57.8, n), 5),
        "Longitude": np.round(rng.uniform(8.0, 12.7, n), 5),
        "image_path": pa.array([f"{i}-1.JPG" for i in ids]),
    }
    if class_id is not None:
        cols["class_id"] = class_id
        cols["species"] = pa.array([f"Genus{c // 6} species{c}" if c >= 0 else None
                                    for c in class_id.tolist()], pa.string())
        cols["genus"] = pa.array([f"Genus{c // 6}" if c >= 0 else None
                                  for c in class_id.tolist()], pa.string())
    return pa.table(cols)


def build_store(path: Path, n: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, N_CLASSES + 1) ** 0.9  # long tail
    weights /= weights.sum()
    n_train, n_val = int(n * 0.85), int(n * 0.10)
    n_new = n - n_train - n_val
    classes = {"train": rng.permutation(N_CLASSES)[rng.choice(N_CLASSES, n_train, p=weights)]}
    val = rng.choice(N_CLASSES, n_val, p=weights)
    val[rng.random(n_val) < 1 / 3] = -1
    classes["val"] = val
    ids = {"train": np.arange(1, n_train + 1) + 10**9,
           "val": np.arange(1, n_val + 1) + 2 * 10**9,
           "new": np.arange(1, n_new + 1) + 3 * 10**9}
    centroids = rng.standard_normal((N_CLASSES + 1, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp, FeatureStore(path) as fs:
        for role in ("train", "val", "new"):
            f = Path(tmp) / f"{role}.parquet"
            pq.write_table(_metadata(ids[role], classes.get(role), rng), f)
            print(f"  ingest {role}: {fs.ingest_metadata(f, role=role)}", flush=True)
        fs.ensure_space(EmbeddingSpace("bench", model_id="synthetic", dim=dim))
        image_ids = reports_image_ids(fs)
        truth = np.concatenate([classes["train"], classes["val"],
                                rng.choice(N_CLASSES, n_new, p=weights)])
        for start in range(0, n, 50_000):
            c = truth[start:start + 50_000]
            vec = centroids[c] + 0.8 * rng.standard_normal((len(c), dim), dtype=np.float32)
            fs.add_embeddings("bench", image_ids[start:start + 50_000], vec)
        print(f"  {n:,} vectors added", flush=True)

        poison = np.array([poison_status()[c] for c in range(N_CLASSES)])
        members = ["bench-mlp-fold1", "bench-mlp-fold2"]
        for fold, run in enumerate(members, 1):
            fs.record_run(run, "train", "bench", "mlp", fold, {}, {
                "track1": 0.3 + 0.01 * fold, "track2": 0.2, "track3": 0.5 + 0.01 * fold,
                "macro_f1": 40.0 - fold, "n_observations": n_val // 2}, None)
        fs.record_run("bench-mlp-ensemble", "ensemble", "bench", "mlp", None,
                      {"members": members}, {"test_track1": 0.29, "test_track2": 0.18,
                                             "test_track3": 0.47, "test_macro_f1": 41.0,
                                             "test_n": n_val // 3}, None)
        fs.record_run(record_id(members), "calibration", "bench", None, None,
                      {"members": members}, {"temperature": 1.3, "poison_bias": -1.0,
                                             "detector_threshold": 0.2, "unknown_rate": 0.33,
                                             "metrics": {"auroc": 0.8, "nll_before": 2.0,
                                                         "nll_after": 1.5}}, None)
        pred_class = rng.choice(N_CLASSES, n_new, p=weights)
        p_poison = rng.beta(0.3, 8.0, n_new)
        risk = p_poison > 0.02
        pred_class[rng.random(n_new) < 0.3] = -1
        kind = np.where(risk, "poison_risk", np.where(pred_class < 0, "unknown", "species"))
        reason = np.where(risk, "poison-risk: P(poisonous) > threshold",
                          np.where(pred_class < 0, "unknown: P(unknown) high", "argmax: p"))
        evidence = [list(rng.choice(ids["train"], 5)) for _ in range(n_new)]
        fs.write_predictions(",".join(members), "bench-batch", pa.table({
            "observation_id": ids["new"],
            "class_id": pa.array(np.where(risk, np.flatnonzero(poison)[0], pred_class), pa.int32()),
            "kind": pa.array(kind.tolist()),
            "status": pa.array(["scored"] * n_new),
            "reason": pa.array(reason.tolist()),
            "poison_prob": p_poison,
            "evidence_observation_ids": pa.array(evidence, pa.list_(pa.int64())),
        }))
        # a labelled held-out batch: half the validation observations, answered with their
        # truth except for a tenth
        val_ids, val_truth = ids["val"][::2], classes["val"][::2]
        answer = np.where(rng.random(len(val_ids)) < 0.1,
                          rng.choice(N_CLASSES, len(val_ids), p=weights), val_truth)
        fs.write_predictions(",".join(members), "bench-val", pa.table({
            "observation_id": val_ids, "class_id": pa.array(answer, pa.int32()),
            "kind": pa.array(["species"] * len(val_ids)),
            "status": pa.array(["scored"] * len(val_ids)),
            "reason": pa.array(["argmax: p"] * len(val_ids)),
            "poison_prob": rng.beta(0.3, 8.0, len(val_ids))}))


def reports_image_ids(fs) -> np.ndarray:
    """Image ids in observation order (one image per observation here)."""
    return fs.sql("SELECT image_id FROM images ORDER BY observation_id").column(0).to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=420_000, help="observations (one image each)")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="20,000 x 256")
    parser.add_argument("--store", help="keep the synthetic store here (built when missing)")
    args = parser.parse_args()
    if args.small:
        args.n, args.dim = 20_000, 256
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.store) if args.store else Path(tmp) / "bench.duckdb"
        if not path.exists():
            print(f"building a {args.n:,}-observation store with {args.dim}-d vectors ...", flush=True)
            t0 = time.perf_counter()
            build_store(path, args.n, args.dim)
            print(f"  built in {time.perf_counter() - t0:.0f} s", flush=True)
        with FeatureStore(path, read_only=True) as fs:
            n = reports.count_observations(fs.con)
            print(f"bench_report: {n:,} observations, OMP_NUM_THREADS="
                  f"{os.environ['OMP_NUM_THREADS']}, {os.cpu_count()} CPUs visible, "
                  f"median of {args.repeats}")
            t_base, t_rep, summary = [], [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                reports.count_observations(fs.con)
                t_base.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                summary = build_report(fs, Path(tmp) / "report.html", ReportOptions())
                t_rep.append(time.perf_counter() - t0)
        base, rep = statistics.median(t_base), statistics.median(t_rep)
        print(f"count(*) scan: {base * 1e3:.1f} ms; report: {rep:.1f} s "
              f"({rep / base:,.0f}x the scan); target < 60 s: {'met' if rep < 60 else 'missed'}")
        print("last report: " + ", ".join(f"{k} {v:.1f}s" for k, v in summary.seconds.items()))
        print(f"sections: {summary.sections}; no data for: {summary.absent or 'none'}")


if __name__ == "__main__":
    main()
