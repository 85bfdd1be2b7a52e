"""Seesaw class counts: accumulated from the sampled labels vs fixed training-set counts.

A small long-tailed problem with a prior shift like DF20 -> DF21: training
classes follow a steep power law, validation and test follow another class
order (so a class rare in training can be common at test time). Each
(sampler, counts) variant trains the same MLP head on the same data; test
top-1 and macro F1 (per image, official definitions) are printed as
mean ± sd over seeds, with the paired difference accumulate - fixed and its
95% t-interval over seeds.

    python benchmarks/seesaw_counts.py [--seeds 5] [--epochs 15]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from heads.classifier import Classifier, EvalSet  # noqa: E402
from heads.metrics import fungiclef_scores  # noqa: E402
from heads.train import TrainConfig  # noqa: E402


def make_problem(seed: int, classes: int, dim: int, n_train: int, n_eval: int, spread: float):
    """Gaussian classes with two modes each; training prior ~ rank^-1.2, evaluation prior
    the same law over a shuffled class order."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, classes + 1, dtype=np.float64)
    train_p = ranks ** -1.2
    train_p /= train_p.sum()
    eval_p = train_p[rng.permutation(classes)]
    centres = rng.normal(size=(classes, dim))
    modes = rng.normal(scale=spread, size=(classes, 2, dim))

    def draw(p, n):
        y = rng.choice(classes, size=n, p=p)
        m = rng.integers(0, 2, n)
        x = centres[y] + modes[y, m] + rng.normal(scale=spread, size=(n, dim))
        return x.astype(np.float32), y

    return draw(train_p, n_train), draw(eval_p, n_eval), draw(eval_p, n_eval)


def run(seed: int, sampler: str, counts: str, args) -> dict[str, float]:
    (X, y), (Xv, yv), (Xt, yt) = make_problem(seed, args.classes, args.dim, args.n_train,
                                              args.n_eval, args.spread)
    cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, loss="seesaw", sampler=sampler,
                      seesaw_counts=counts, poison_weight=0.0, seed=seed, device="cpu",
                      progress=False, patience=0, monitor="loss")
    clf = Classifier("mlp", {"hidden": args.hidden}, cfg).fit(X, y, val=EvalSet(Xv, yv))
    s = fungiclef_scores(yt, clf.predict(Xt), [])
    return {"top1": 100 * s["accuracy"], "macro_f1": s["macro_f1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--spread", type=float, default=2.0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    variants = [(s, c) for s in ("val_matched", "shuffle") for c in ("accumulate", "fixed")]
    res = {v: [run(seed, *v, args) for seed in range(args.seeds)] for v in variants}
    print(f"{args.seeds} seeds, {args.classes} classes, {args.n_train} training / {args.n_eval} "
          f"test images, {args.epochs} epochs ({time.perf_counter() - t0:.0f} s)\n")
    print("| sampler | seesaw counts | top-1 % | macro F1 |")
    print("|---|---|---|---|")
    for (sampler, counts), rows in res.items():
        cells = [f"{np.mean([r[k] for r in rows]):.1f} ± {np.std([r[k] for r in rows], ddof=1):.1f}"
                 for k in ("top1", "macro_f1")]
        print(f"| {sampler} | {counts} | {cells[0]} | {cells[1]} |")
    from scipy.stats import t as student_t

    half = student_t.ppf(0.975, args.seeds - 1) / np.sqrt(args.seeds)
    print("\n| sampler | accumulate - fixed: top-1 (95% CI) | macro F1 (95% CI) "
          "| seeds accumulate wins (F1) |")
    print("|---|---|---|---|")
    for sampler in ("val_matched", "shuffle"):
        a, f = res[(sampler, "accumulate")], res[(sampler, "fixed")]
        cells = []
        for k in ("top1", "macro_f1"):
            d = np.array([x[k] - y[k] for x, y in zip(a, f, strict=True)])
            sd = d.std(ddof=1)
            cells.append(f"{d.mean():+.1f} ± {sd:.1f} [{d.mean() - half * sd:+.1f}, "
                         f"{d.mean() + half * sd:+.1f}]")
        wins = sum(x["macro_f1"] > y["macro_f1"] for x, y in zip(a, f, strict=True))
        print(f"| {sampler} | {cells[0]} | {cells[1]} | {wins}/{args.seeds} |")


if __name__ == "__main__":
    main()
