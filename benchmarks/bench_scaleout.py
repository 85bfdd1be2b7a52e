"""The Ray Data path against the single-process path, same data, same run.

Embed: the simulated photos of a store through ``embed_store`` (DataLoader decoding
workers, one model) and through ``embed_store_ray`` (decode tasks, a model actor
pool, Parquet shards, ingest per shard), each on a fresh copy of the store, with the
tiny DINOv2 of the demo. Score: one batch of new observations through
``score_batch`` and ``score_batch_ray`` with the same loaded model and the batch's
vectors already stored. Ray starts once before the timings (its start-up is printed
apart). Prints images/s and observations/s (medians of ``--repeats``) and the ratio
Ray / single-process (target >= 0.8).

    python benchmarks/bench_scaleout.py --small
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPACE = "tiny"


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with the CLI's prints and progress bars swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def build_world(root: Path, count_scale: float) -> dict:
    """Simulated photos, the demo's tiny DINOv2, a store with train/val photos embedded
    and heads trained, and a batch of new observations (the test file) with its photos
    embedded too."""
    import pyarrow.csv as pacsv

    from sporeprint.cli import main
    from sporeprint.demo import build_tiny_dinov2
    from sporeprint.simulator.simulate import SimConfig, simulate, write_simulation
    from store import FeatureStore

    sim = simulate(SimConfig(scale="small", classes=70, seed=0, dim=16,
                             count_scale=count_scale))
    files = write_simulation(sim, root / "sim", images=True, image_size=128)
    model = build_tiny_dinov2(root / "dinov2-tiny")
    fresh, trained = root / "fresh.duckdb", root / "trained.duckdb"
    for role in ("train", "val"):
        quiet(main, ["ingest", "--store", str(fresh), "--metadata", str(files[role]),
                     "--role", role, "--images", str(files["images"])])
    shutil.copy(fresh, trained)
    embed = ["embed", "--store", str(trained), "--model", str(model), "--space", SPACE]
    assert quiet(main, embed) == 0
    assert quiet(main, ["train", "--store", str(trained), "--space", SPACE, "--head", "mlp",
                        "--hidden", "64", "--epochs", "3", "--fold", "all"]) == 0
    assert quiet(main, ["ingest", "--store", str(trained), "--metadata", str(files["test"]),
                        "--role", "new", "--images", str(files["images"])]) == 0
    assert quiet(main, embed) == 0
    with FeatureStore(trained, read_only=True) as fs:
        run = fs.latest_runs(("ensemble",), limit=1)[0]
    with FeatureStore(fresh, read_only=True) as fs:
        n_images = fs.sql("SELECT count(*) FROM images").column(0)[0]
    n_obs = len(np.unique(pacsv.read_csv(files["test"])["observation_id"].to_numpy()))
    return {"fresh": fresh, "trained": trained, "model": model, "run": run,
            "batch": files["test"], "images": files["images"], "n_images": n_images.as_py(),
            "n_obs": n_obs}


def time_embed(world: dict, root: Path, engine: str, options, few: int = 0) -> float:
    """Seconds to embed every photo (or, with ``few``, only the first ``few``)."""
    from embedder import ImageEmbedder
    from sporeprint.distributed import embed_store_ray
    from sporeprint.embedding import embed_store
    from store import FeatureStore

    store = root / f"embed-{engine}.duckdb"
    shutil.copy(world["fresh"], store)
    with FeatureStore(store) as fs:
        if few:  # photos without a path are skipped before any work
            fs.sql("UPDATE images SET file_path = NULL WHERE image_id NOT IN "
                   "(SELECT image_id FROM images ORDER BY image_id LIMIT ?)", [few])
        start = time.perf_counter()
        if engine == "local":
            emb = ImageEmbedder(str(world["model"]), device="cpu", dtype="float32")
            report = embed_store(fs, emb, SPACE, progress=False)
        else:
            report = embed_store_ray(fs, str(world["model"]), SPACE, dtype="float32",
                                     options=options)
        seconds = time.perf_counter() - start
    assert report.embedded == (few or world["n_images"]), report
    store.unlink()
    return seconds


def time_score(world: dict, root: Path, engine: str, model, options,
               batch: Path | None = None) -> float:
    """Seconds to score the batch (or another ``batch`` file of the same photos)."""
    import pyarrow.csv as pacsv

    from sporeprint.distributed import score_batch_ray
    from sporeprint.scoring import score_batch
    from store import FeatureStore

    store = root / f"score-{engine}.duckdb"
    shutil.copy(world["trained"], store)
    out = root / engine / "pred.csv"
    batch = batch or world["batch"]
    with FeatureStore(store) as fs:
        start = time.perf_counter()
        if engine == "local":
            report = score_batch(fs, batch, [world["run"]], model=model, out=out)
        else:
            report = score_batch_ray(fs, batch, [world["run"]], model=model,
                                     out=out, options=options)
        seconds = time.perf_counter() - start
    n_obs = len(np.unique(pacsv.read_csv(batch)["observation_id"].to_numpy()))
    assert report.scored + report.no_usable_image + report.rejected_observations == n_obs, \
        report
    store.unlink()
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="~570 photos: a few minutes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    p.add_argument("--address", default=None, help="a Ray cluster instead of a local one")
    args = p.parse_args()
    logging.disable(logging.WARNING)

    from sporeprint.distributed import RayOptions
    from sporeprint.distributed.cluster import connect
    from sporeprint.scoring import ScoringModel
    from store import FeatureStore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = build_world(root, 0.02 if args.small else 0.05)
        print(f"data: {world['n_images']} photos to embed (128 px JPEG), a batch of "
              f"{world['n_obs']} new observations to score; tiny DINOv2 (hidden 64, 2 layers)")
        start = time.perf_counter()
        embed_opts = RayOptions(address=args.address, local_cpus=args.cpus, batch_size=64)
        ray = connect(embed_opts)
        print(f"Ray start-up: {time.perf_counter() - start:.1f} s "
              f"({ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
              f"{ray.cluster_resources().get('GPU', 0):.0f} GPUs); not in the timings below")
        score_opts = RayOptions(address=args.address, local_cpus=args.cpus, batch_size=256)
        with FeatureStore(world["trained"], read_only=True) as fs:
            model = ScoringModel.load(fs, [world["run"]])

        # The Ray path's fixed cost per run (planning, actor start, model load in the
        # actor) measured on a run of a few items; the marginal rate is what is left.
        import pyarrow.csv as pacsv

        test = pacsv.read_csv(world["batch"])
        two = test.filter(pa.array(np.isin(test["observation_id"].to_numpy(),
                                           np.unique(test["observation_id"].to_numpy())[:2])))
        few_batch = root / "two_observations.csv"
        pacsv.write_csv(two, few_batch)
        few = 16

        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            for engine in ("local", "ray"):
                for key, fn in (
                        (("embed", engine), lambda e=engine: time_embed(world, root, e,
                                                                         embed_opts)),
                        (("score", engine), lambda e=engine: time_score(world, root, e, model,
                                                                         score_opts)),
                        (("embed-few", engine), lambda e=engine: time_embed(
                            world, root, e, embed_opts, few=few)),
                        (("score-few", engine), lambda e=engine: time_score(
                            world, root, e, model, score_opts, batch=few_batch))):
                    times.setdefault(key, []).append(quiet(fn))
        med = {k: statistics.median(v) for k, v in times.items()}
        for job, n, n_few, unit in (("embed", world["n_images"], few, "images/s"),
                                    ("score", world["n_obs"], 2, "observations/s")):
            local = n / med[job, "local"]
            dist = n / med[job, "ray"]
            runs = ", ".join(f"{t:.1f}" for t in times[job, "ray"])
            base = ", ".join(f"{t:.1f}" for t in times[job, "local"])
            print(f"{job}: single-process {local:8.1f} {unit} (runs {base} s), "
                  f"Ray {dist:8.1f} {unit} (runs {runs} s), ratio {dist / local:.2f}x")
            fixed = med[job + "-few", "ray"] - n_few / local
            print(f"  Ray fixed cost per run ~{fixed:.1f} s ({n_few} items: "
                  f"{med[job + '-few', 'ray']:.1f} s)", end="")
            local_span = med[job, "local"] - med[job + "-few", "local"]
            ray_span = med[job, "ray"] - med[job + "-few", "ray"]
            if min(local_span, ray_span) < 1.0:  # differences of noise, not rates
                print("; the batch is too small to measure a marginal rate")
                continue
            marginal, local_marginal = (n - n_few) / ray_span, (n - n_few) / local_span
            print(f"; marginal rate past it: Ray {marginal:.1f} vs single-process "
                  f"{local_marginal:.1f} {unit}, ratio {marginal / local_marginal:.2f}x")
        print("ratio = Ray throughput / single-process throughput, medians of "
              f"{args.repeats} (target >= 0.8)")


if __name__ == "__main__":
    main()
