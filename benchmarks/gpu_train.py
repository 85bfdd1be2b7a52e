"""Seconds per training epoch over 420,000 synthetic samples (1024-d + metadata),
for the MLP and the fusion head, on the GPU; with a bare PyTorch loop as baseline.

Needs torch, numpy, scikit-learn, tqdm and safetensors (not duckdb or faiss).
Finishes in under 3 minutes on one H100; ``--tiny`` runs a small CPU version.

    python benchmarks/gpu_train.py [--tiny] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from heads.modules import FusionConfig, MLPConfig, build_head, metadata_groups  # noqa: E402
from heads.train import HeadData, TrainConfig, resolve_device, train_head  # noqa: E402

FEATURES = ([f"month_{s}" for s in ("sin", "cos")] + [f"day_{s}" for s in ("sin", "cos")]
            + [f"geo_{i}" for i in range(2, 6)] + [f"substrate_{i}" for i in range(32)]
            + [f"metasubstrate_{i}" for i in range(10)] + [f"habitat_{i}" for i in range(31)])


def bare_epoch(head, X, M, Y, P, batch_size: int, device) -> float:
    """Seconds for one epoch of a minimal loop (after a warm-up epoch)."""
    torch.manual_seed(0)
    model = build_head(head).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    n = len(X)
    for _ in range(2):  # a warm-up epoch, then the timed one (as reported for train_head)
        sync(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, device=device)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            with amp:
                out = model(X[idx], M[idx])
                loss = F.cross_entropy(out.species.float(), Y[idx]) + 0.1 * \
                    F.binary_cross_entropy_with_logits(out.poison.float(), P[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - t0


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="4,000 samples, 256-d, CPU is fine")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--loss", default="ce", help="ce matches the bare loop; try seesaw")
    ap.add_argument("--seesaw-counts", default="accumulate", choices=["accumulate", "fixed"],
                    help="seesaw class counts: accumulated from the batches, or the training set's")
    ap.add_argument("--heads", default="mlp,fusion", help="comma-separated: mlp, fusion")
    args = ap.parse_args()
    device = resolve_device("auto")
    n, d, c, hidden = (4_000, 256, 100, 512) if args.tiny else (420_000, 1024, 1604, 4096)
    m = len(FEATURES)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device: {name}  torch {torch.__version__}  n={n} d={d} m={m} classes={c} "
          f"batch={args.batch_size}")

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, c, (n,), generator=g)
    centres = torch.randn(c, d, generator=g)
    X = (centres[labels] + torch.randn(n, d, generator=g)).numpy()
    M = torch.randn(n, m, generator=g).numpy()
    labels = labels.numpy()
    poisonous = np.zeros(c, dtype=bool)
    poisonous[: max(1, c // 33)] = True
    n_val = 10_000 if not args.tiny else 400
    train = HeadData(X, labels, M)
    val = HeadData(X[:n_val], labels[:n_val], M[:n_val], np.arange(n_val) // 2)
    heads = {
        "mlp": MLPConfig(embed_dim=d, num_classes=c, meta_dim=m, hidden=hidden),
        "fusion": FusionConfig(embed_dim=d, num_classes=c, meta_dim=m, groups=metadata_groups(FEATURES),
                               heads=8, layers=1),
    }
    dev_tensors = [torch.as_tensor(a).to(device) for a in
                   (X, M, labels, poisonous[labels].astype(np.float32))]
    print(f"{'head':8s} {'params':>10s} {'bare s/epoch':>13s} {'train_head s/epoch':>19s} "
          f"{'ratio':>6s} {'setup+val s/epoch':>6s}   loss={args.loss}+poison "
          f"(seesaw counts: {args.seesaw_counts}); paper: 67 s/epoch, 47M params")
    for kind, head in heads.items():
        if kind not in args.heads.split(","):
            continue
        params = sum(p.numel() for p in build_head(head).parameters())
        t_bare = bare_epoch(head, *dev_tensors, args.batch_size, device)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-4, loss=args.loss,
                          seesaw_counts=args.seesaw_counts, patience=0, progress=False,
                          device=str(device))
        res = train_head(head, train, val, cfg, poisonous=poisonous)
        # the first epoch includes warm-up (kernel selection); report the last
        t_epoch = res.history[-1]["train_seconds"]
        t_val = (res.seconds - sum(h["train_seconds"] for h in res.history)) / len(res.history)
        print(f"{kind:8s} {params / 1e6:9.1f}M {t_bare:13.2f} {t_epoch:19.2f} "
              f"{t_bare / t_epoch:6.3f} {t_val:6.2f}")
        del res
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
