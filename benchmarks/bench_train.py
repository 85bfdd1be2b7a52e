"""Training throughput of heads.train.train_head against a bare PyTorch loop.

Both train the same MLP head on the same in-memory tensors with AdamW and
cross-entropy + 0.1 * BCE(poison), batches sliced from a random permutation.
``train_head`` additionally runs its scheduler, progress bookkeeping and a
full evaluation of a small validation set each epoch; both figures are shown.
Prints medians over repeats and the ratio (target >= 0.9).

    python benchmarks/bench_train.py [--small] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from heads.modules import MLPConfig, build_head
from heads.train import HeadData, TrainConfig, resolve_device, train_head


def bare_loop(head: MLPConfig, X, M, Y, P, epochs: int, batch_size: int, lr: float,
              device: torch.device) -> float:
    """Seconds for ``epochs`` of the simplest possible loop over device tensors."""
    torch.manual_seed(0)
    model = build_head(head).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    X, M, Y, P = (t.to(device) for t in (X, M, Y, P))
    gen = torch.Generator().manual_seed(0)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    n = len(X)
    sync()
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            with amp:
                out = model(X[idx], M[idx])
                loss = F.cross_entropy(out.species.float(), Y[idx]) + 0.1 * \
                    F.binary_cross_entropy_with_logits(out.poison.float(), P[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync()
    return time.perf_counter() - t0


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small sizes, finishes in seconds")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n, d, m, c, hidden, epochs = ((4_000, 256, 32, 100, 256, 2) if args.small
                                  else (40_000, 1024, 64, 500, 1024, 2))
    bs = 256
    device = resolve_device(args.device)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, c, n)
    centres = rng.normal(size=(c, d)).astype(np.float32)
    X = centres[labels] + rng.normal(size=(n, d)).astype(np.float32)
    M = rng.normal(size=(n, m)).astype(np.float32)
    poisonous = np.zeros(c, dtype=bool)
    poisonous[: c // 20] = True
    n_val = max(64, n // 50)
    train = HeadData(X, labels, M)
    val = HeadData(X[:n_val], labels[:n_val], M[:n_val], np.arange(n_val) // 2)
    head = MLPConfig(embed_dim=d, num_classes=c, meta_dim=m, hidden=hidden)
    cfg = TrainConfig(epochs=epochs, batch_size=bs, lr=1e-3, loss="ce", patience=0,
                      device=str(device), progress=False)
    tensors = [torch.from_numpy(X), torch.from_numpy(M), torch.from_numpy(labels),
               torch.from_numpy(poisonous[labels].astype(np.float32))]

    print(f"device={device} n={n} d={d} m={m} classes={c} hidden={hidden} batch={bs} "
          f"epochs={epochs} threads={torch.get_num_threads()}")
    bare_loop(head, *tensors, 1, bs, 1e-3, device)  # warm-up
    t_bare, t_loop, t_loop_train = [], [], []
    for r in range(args.repeats):
        if r % 2 == 0:  # alternate the order so drift in machine load hits both alike
            t_bare.append(bare_loop(head, *tensors, epochs, bs, 1e-3, device))
        t0 = time.perf_counter()
        res = train_head(head, train, val, cfg, poisonous=poisonous)
        t_loop.append(time.perf_counter() - t0)
        t_loop_train.append(sum(h["train_seconds"] for h in res.history))
        if r % 2 == 1:
            t_bare.append(bare_loop(head, *tensors, epochs, bs, 1e-3, device))
    samples = n * epochs
    bare = samples / statistics.median(t_bare)
    full = samples / statistics.median(t_loop)
    train_only = samples / statistics.median(t_loop_train)
    print(f"bare PyTorch loop          : {bare:10.0f} samples/s")
    print(f"train_head, training phase : {train_only:10.0f} samples/s  ratio {train_only / bare:.3f}")
    print(f"train_head, incl. setup+val: {full:10.0f} samples/s  ratio {full / bare:.3f}")


if __name__ == "__main__":
    main()
