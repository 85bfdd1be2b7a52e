"""Batch scoring throughput: the whole `score` pipeline from stored vectors versus
the bare head forward passes over the same tensors.

Builds a simulated store (medium scale by default), trains a two-fold MLP
ensemble for one epoch (speed, not accuracy, is measured here), builds an
IVF-Flat index of the training images, then scores a batch of N new
observations (default 40,216, the size of the FungiCLEF 2024 test set) given
as a metadata CSV plus precomputed vectors. Prints the pipeline's seconds per
phase, the bare forward time and their ratio (pipeline overhead), each a median
of ``--repeats`` interleaved runs, with the load average while they ran.

    python benchmarks/bench_score.py            # 40,216 observations
    python benchmarks/bench_score.py --small    # 4,000 observations, small store
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from heads.train import TrainConfig  # noqa: E402
from sporeprint.indexing import build_index  # noqa: E402
from sporeprint.rows import load_rows  # noqa: E402
from sporeprint.scoring import ScoringModel, score_batch  # noqa: E402
from sporeprint.scoring.calibration import fit_and_record  # noqa: E402
from sporeprint.scoring.model import N_EVIDENCE  # noqa: E402
from sporeprint.scoring.observations import observation_scores  # noqa: E402
from sporeprint.scoring.outputs import predictions_table  # noqa: E402
from sporeprint.simulator.simulate import (  # noqa: E402
    SimConfig,
    ingest_simulation,
    simulate,
    write_simulation,
)
from sporeprint.training import train_folds  # noqa: E402
from store import FeatureStore  # noqa: E402


def make_batch(sim_test: pa.Table, vectors: dict[str, np.ndarray], n_obs: int, out: Path,
               seed: int = 0) -> tuple[Path, Path]:
    """A new batch of ``n_obs`` observations: test rows resampled with fresh ids and
    slightly perturbed copies of their vectors."""
    rng = np.random.default_rng(seed)
    obs = np.unique(sim_test["observation_id"].to_numpy())
    pick = rng.choice(obs, size=n_obs, replace=True)
    by_obs = {}
    ids = sim_test["observation_id"].to_numpy()
    for i, o in enumerate(ids):
        by_obs.setdefault(o, []).append(i)
    rows, new_ids = [], []
    for j, o in enumerate(pick):
        rows.extend(by_obs[o])
        new_ids.extend([9_000_000_000 + j] * len(by_obs[o]))
    batch = sim_test.take(pa.array(rows))
    new_ids = np.asarray(new_ids, dtype=np.int64)
    paths = [f"{o}-{k}.JPG" for k, o in enumerate(new_ids)]
    old_paths = batch["image_path"].to_pylist()
    batch = batch.set_column(batch.column_names.index("observation_id"), "observation_id",
                             pa.array(new_ids))
    batch = batch.set_column(batch.column_names.index("image_path"), "image_path", pa.array(paths))
    X = np.stack([vectors[p] for p in old_paths])
    X = X + rng.normal(scale=0.01, size=X.shape).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    csv_path, pq_path = out / "batch.csv", out / "batch_embeddings.parquet"
    pacsv.write_csv(batch, csv_path)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(X.astype(np.float32).reshape(-1)), X.shape[1])
    pq.write_table(pa.table({"image_path": paths, "embedding": emb}), pq_path)
    return csv_path, pq_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--observations", type=int, default=40_216)
    ap.add_argument("--scale", default="medium", choices=["small", "medium", "full"])
    ap.add_argument("--hidden", type=int, default=4096, help="MLP hidden width (paper: 4096)")
    ap.add_argument("--repeats", type=int, default=3, help="bare-forward repeats (median)")
    ap.add_argument("--small", action="store_true", help="4,000 observations on the small store")
    args = ap.parse_args()
    if args.small:
        args.observations, args.scale, args.hidden = 4_000, "small", 1024
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = simulate(SimConfig(scale=args.scale, seed=0))
        files = write_simulation(sim, tmp / "sim")
        store = tmp / "fungi.duckdb"
        with FeatureStore(store) as fs:
            ingest_simulation(fs, files, "sim", 0, model_id="simulator")
            print(f"store: {args.scale} simulation, training heads (1 epoch, hidden {args.hidden}) ...")
            runs = train_folds(fs, "sim", "mlp", [1, 2], head_params={"hidden": args.hidden},
                               config=TrainConfig(epochs=1, progress=False))
            build_index(fs, "sim", "ivf_flat", "train")
            fit_and_record(fs, [runs[-1].run_id])  # as `sporeprint train` ends
            vectors = dict(zip(sim.image_paths.tolist(), sim.vectors, strict=True))
            csv_path, pq_path = make_batch(sim.test_public(), vectors, args.observations, tmp)

            model = ScoringModel.load(fs, [runs[-1].run_id])
            t0 = time.perf_counter()
            report = score_batch(fs, csv_path, [runs[-1].run_id], embeddings=pq_path,
                                 out=tmp / "pred.csv", batch="bench", model=model)
            pipeline = time.perf_counter() - t0
            assert report.observations == args.observations

            # Interleaved: the scoring from stored vectors (rows -> heads -> kNN evidence and
            # unknown score -> calibrated decision -> predictions table) vs the bare forward
            # passes of the same heads over the same image tensors.
            batch_ids = np.unique(pacsv.read_csv(csv_path)["observation_id"].to_numpy())
            rows, _ = load_rows(fs, "sim", batch_ids, labelled_only=False)
            det = model.calibration.detector_for(model.index)
            bare, scoring, bare_cpu, scoring_cpu = [], [], [], []
            phases: dict[str, list[float]] = {}

            def timed(name, fn):
                t0 = time.perf_counter()
                out = fn()
                phases.setdefault(name, []).append(time.perf_counter() - t0)
                return out

            neighbours_fetched = max(4 * N_EVIDENCE, det.k)  # as TrainingNeighbours.search
            in_order = model.index.searches_in_list_order(len(batch_ids))
            list_order = " (list order)" if in_order else ""
            load_before = os.getloadavg()
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                model.ensemble.predict_proba(rows.embeddings, rows.metadata)
                bare.append(time.perf_counter() - t0)
                bare_cpu.append(time.process_time() - c0)
                t0, c0 = time.perf_counter(), time.process_time()
                scores, _ = model.scores(fs, batch_ids)
                predictions_table([(model.decide(scores), "scored")])
                scoring.append(time.perf_counter() - t0)
                scoring_cpu.append(time.process_time() - c0)
                # the same steps one by one, for the per-phase figures
                r = timed("fetch rows", lambda: load_rows(fs, "sim", batch_ids,
                                                          labelled_only=False)[0])
                sc = timed("heads + observation means", lambda r=r: observation_scores(
                    model.ensemble, r))
                near = timed("kNN (evidence + unknown score)", lambda sc=sc: (
                    model.neighbours.search(sc.queries, N_EVIDENCE, det.k)))
                d = timed("calibrate + decide", lambda sc=sc, near=near: model.decide(
                    sc, knn=near.unknown_score, evidence=near.observation_ids))
                timed("predictions table", lambda d=d: predictions_table([(d, "scored")]))
                # the kNN's search alone: as scoring runs it (a big batch against an index
                # that outgrows the caches goes in inverted-list order), and one plain
                # FAISS call with the queries in their own order
                timed(f"search as scoring runs it{list_order}", lambda sc=sc: model.index.search(
                    sc.queries, neighbours_fetched))
                timed("search, one FAISS call", lambda sc=sc: model.index._index.search(
                    sc.queries, neighbours_fetched))
            load_after = os.getloadavg()
            t0 = time.perf_counter()
            again = score_batch(fs, csv_path, [runs[-1].run_id], embeddings=pq_path,
                                out=tmp / "pred.csv", batch="bench", model=model)
            rescore = time.perf_counter() - t0

    forward = statistics.median(bare)
    decided = statistics.median(scoring)
    print(f"batch: {args.observations:,} observations, {len(rows):,} images, "
          f"{rows.embeddings.shape[1]}-d, MLP hidden {args.hidden}, 2-head ensemble")
    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average "
          f"(1 min) {load_before[0]:.2f} before the timed runs, {load_after[0]:.2f} after")
    print(f"score pipeline (ingest + encode + heads + open-set + decide + write): {pipeline:7.2f} s")
    print(f"re-score of the same batch (nothing new to ingest):                 {rescore:7.2f} s")
    print(f"bare head forward passes (median of {args.repeats}):                          {forward:7.2f} s")
    print(f"scoring from stored vectors, median of {args.repeats}:                   {decided:7.2f} s")
    print(f"  per phase (medians of {args.repeats}, timed step by step):")
    for name, times in phases.items():
        print(f"    {name:40s} {statistics.median(times):7.3f} s")
    print(f"  overhead over the bare forward: {decided - forward:7.3f} s")
    print(f"ratio scoring / bare forward (same heads, same batch): {decided / forward:.2f}x "
          "(target <= 1.3x)")
    print(f"CPU seconds of this process (all threads), medians: bare forward "
          f"{statistics.median(bare_cpu):.2f} s, scoring {statistics.median(scoring_cpu):.2f} s, "
          f"ratio {statistics.median(scoring_cpu) / statistics.median(bare_cpu):.2f}x")
    print(f"ratio whole pipeline incl. ingest and files / bare forward: {pipeline / forward:.2f}x")
    print(f"answers: {again.answers}")


if __name__ == "__main__":
    main()
