"""Scoring from vectors on one GPU: 40,216 observations (75,601 images, the FungiCLEF
2024 test set's size) against 295,938 training images (DF20's size), 1,604 species.

The steps `sporeprint score` runs once the vectors are fetched, on the GPU where they
can run there:
  heads     two MLP heads (hidden 4,096, 1,024-d + 79 metadata columns) as an
            ensemble, on the GPU (the device scoring loads heads on: ``auto``)
  means     mean probability and mean vector per observation
  kNN       exact top-20 over the training vectors through PyTorch on the GPU
            (`retrieval.torch_search`, what search uses when FAISS has no GPU),
            giving the unknown score (10th neighbour) as scoring does
  decide    temperature scaling, the poison prior shift, the summary and the
            Track 3 rule (numpy, on the CPU)
and, timed in the same run, the bare forward of the same heads; prints seconds per
step (medians), the total against the <= 10 s target, the ratio to the bare forward,
and the GPU kNN against numpy's exact answer on some queries. Random weights and
vectors: speed, not accuracy, is measured; the store fetch (DuckDB, on the CPU) is
not included (`bench_score.py` times it).

Needs torch, numpy, scipy, scikit-learn, safetensors and tqdm (not DuckDB or FAISS),
so it runs on a GPU machine that has only those.

    python benchmarks/gpu_score.py           # on a GPU machine, about a minute
    python benchmarks/gpu_score.py --tiny    # small sizes on the CPU: checks it runs
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from heads.calibration import PoisonPrior, TemperatureScaler  # noqa: E402
from heads.classifier import Classifier, Ensemble  # noqa: E402
from heads.decision import decide_summary, summarise  # noqa: E402
from heads.inference import ObservationMeans  # noqa: E402
from heads.train import TrainConfig  # noqa: E402

META_COLUMNS, DETECTOR_K, FETCH = 79, 10, 20  # as scoring: 4 x 5 evidence, 10th for the score


def torch_search_module():
    """`retrieval/torch_search.py` by path: the `retrieval` package imports FAISS,
    which a GPU machine may lack; this module needs only numpy and torch."""
    spec = importlib.util.spec_from_file_location("torch_search", ROOT / "retrieval" /
                                                  "torch_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="small sizes on the CPU")
    ap.add_argument("--observations", type=int, default=40_216)
    ap.add_argument("--images", type=int, default=75_601)
    ap.add_argument("--train-images", type=int, default=295_938)
    ap.add_argument("--classes", type=int, default=1_604)
    ap.add_argument("--hidden", type=int, default=4_096)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.tiny:
        args.observations, args.images, args.train_images = 300, 560, 2_000
        args.classes, args.hidden, args.repeats = 40, 64, 2
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    dim, rng = 1024, np.random.default_rng(0)

    # Heads: one short epoch on random rows builds them on the device scoring would use.
    n_fit = 4 * args.classes
    x_fit, m_fit = unit(rng, n_fit, dim), rng.standard_normal((n_fit, META_COLUMNS), np.float32)
    y_fit = np.arange(n_fit) % args.classes
    poisonous = np.arange(0, args.classes, 10)
    tc = TrainConfig(epochs=1, progress=False, device=device, patience=0)
    members = [Classifier("mlp", {"hidden": args.hidden}, TrainConfig(**{**tc.__dict__, "seed": s}))
               .fit(x_fit, y_fit, m_fit, poisonous_classes=poisonous) for s in (1, 2)]
    ensemble = Ensemble(members)
    classes = ensemble.classes_
    is_poisonous = np.isin(classes, poisonous)

    # The batch: images of observations (1-3 images each) and the training vectors.
    obs_of_image = np.sort(rng.integers(0, args.observations, args.images))
    obs_of_image[:args.observations] = np.arange(args.observations)  # every observation has one
    obs_of_image.sort()
    X, meta = unit(rng, args.images, dim), rng.standard_normal((args.images, META_COLUMNS),
                                                             np.float32)
    train = unit(rng, args.train_images, dim)
    ts = torch_search_module()
    t0 = time.perf_counter()
    index = ts.TorchExactSearch(train, np.arange(args.train_images, dtype=np.int64), device)
    upload = time.perf_counter() - t0

    temperature = TemperatureScaler.from_state({"kind": "TemperatureScaler", "temperature": 1.3,
                                                "min_temperature": 0.05, "max_temperature": 20.0})
    prior = PoisonPrior.from_state({"kind": "PoisonPrior", "bias": 0.5, "min_bias": -8.0,
                                    "max_bias": 8.0})

    def scoring() -> dict[str, float]:
        times = {}
        t = time.perf_counter()
        probs = ensemble.predict_proba(X, meta)
        times["heads"] = time.perf_counter() - t
        t = time.perf_counter()
        means = ObservationMeans(obs_of_image)
        mean_probs = means(probs)
        q = means(X)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        times["means"] = time.perf_counter() - t
        t = time.perf_counter()
        D, _ = index.search(q.astype(np.float32), FETCH)
        unknown_score = 1.0 - D[:, DETECTOR_K - 1].astype(np.float64)
        times["kNN"] = time.perf_counter() - t
        t = time.perf_counter()
        p = prior.apply(temperature.transform(np.log(np.maximum(mean_probs, 1e-12))), is_poisonous)
        p_unknown = 1.0 / (1.0 + np.exp(-(unknown_score - 0.5) * 10.0))
        decide_summary(summarise(p, p_unknown, classes, is_poisonous))
        times["decide"] = time.perf_counter() - t
        times["total"] = sum(times.values())
        return times

    scoring()  # warm-up: kernels, allocator
    bare, runs = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ensemble.predict_proba(X, meta)
        if device == "cuda":
            torch.cuda.synchronize()
        bare.append(time.perf_counter() - t)
        runs.append(scoring())

    # The GPU kNN against numpy's exact top-10 on some queries (ties aside, the same).
    check = unit(np.random.default_rng(1), 200, dim)
    _, got = index.search(check, DETECTOR_K)
    want = np.argsort(-(check @ train.T), axis=1, kind="stable")[:, :DETECTOR_K]
    agree = np.mean([len(set(g) & set(w)) / DETECTOR_K for g, w in zip(got, want, strict=True)])

    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    forward = statistics.median(bare)
    print(f"device: {name}; torch {torch.__version__}; {args.observations:,} observations, "
          f"{args.images:,} images, {args.train_images:,} training vectors, {args.classes:,} "
          f"species, 2 MLP heads hidden {args.hidden:,}")
    print(f"training vectors to the device (once per model load): {upload:.2f} s")
    for k in ("heads", "means", "kNN", "decide"):
        print(f"  {k:8s} {med[k]:7.3f} s   (median of {args.repeats})")
    print(f"scoring from vectors: {med['total']:.2f} s (target <= 10 s on one GPU for 40,216 "
          f"observations)")
    print(f"bare head forward: {forward:.3f} s; ratio scoring / bare forward {med['total'] / forward:.2f}x")
    print(f"torch kNN ({device}) top-{DETECTOR_K} vs numpy exact on {len(check)} queries: "
          f"{agree:.4f} agreement")
    return 0 if agree > 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
