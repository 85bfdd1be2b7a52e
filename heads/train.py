"""One training loop for a head: seeded, CPU or GPU, metrics over the whole validation set.

Example:
    >>> rng = np.random.default_rng(0)
    >>> data = HeadData(rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 3, 64))
    >>> result = train_head(MLPConfig(embed_dim=8, num_classes=3, hidden=16), data, None,
    ...                     TrainConfig(epochs=2, progress=False))
    >>> len(result.history)
    2
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from heads.config import (  # noqa: F401 (TrainConfig and its choices are imported from here)
    MONITORS,
    SAMPLERS,
    SCHEDULERS,
    SEESAW_COUNTS,
    TrainConfig,
)
from heads.errors import HeadsError
from heads.inference import aggregate_by_observation, softmax
from heads.losses import HeadLoss, species_loss
from heads.metrics import fungiclef_scores, poisonous_recall, topk_accuracy
from heads.modules import HeadConfig, HeadOutput, MLPConfig, build_head  # noqa: F401 (doctest)

log = logging.getLogger(__name__)

@dataclass
class HeadData:
    """Rows for training or validation: one per image.

    ``labels`` are class *indices* into the head's class list, ``-1`` for an
    unknown species. ``poison`` (bool per row) defaults to the per-class flags
    passed to :func:`train_head`. ``genus`` / ``family`` are optional taxonomy
    indices (``-1`` = missing).
    """

    embeddings: np.ndarray  # float32 (n, d)
    labels: np.ndarray  # int64 (n,)
    metadata: np.ndarray | None = None  # float32 (n, m)
    observation_ids: np.ndarray | None = None  # int64 (n,)
    poison: np.ndarray | None = None  # bool (n,)
    genus: np.ndarray | None = None
    family: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.embeddings = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        if self.embeddings.ndim != 2:
            raise HeadsError(f"embeddings must be 2-d (n, d), got shape {self.embeddings.shape}")
        n = len(self.embeddings)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.metadata is not None:
            self.metadata = np.ascontiguousarray(self.metadata, dtype=np.float32)
            if self.metadata.ndim != 2:
                raise HeadsError(f"metadata must be 2-d (n, m), got shape {self.metadata.shape}")
        for name in ("labels", "metadata", "observation_ids", "poison", "genus", "family"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise HeadsError(f"{name} has {len(value)} rows but embeddings have {n}; "
                                 "pass one row per image")
        if self.metadata is not None and not np.isfinite(self.metadata).all():
            raise HeadsError("metadata contains NaN or inf; encode missing values before training")
        if not np.isfinite(self.embeddings).all():
            raise HeadsError("embeddings contain NaN or inf; re-embed or drop those images")

    def __len__(self) -> int:
        return len(self.embeddings)


@dataclass
class Checkpoint:
    epoch: int
    score: float
    state: dict[str, torch.Tensor]


@dataclass
class TrainResult:
    model: torch.nn.Module  # holds the best checkpoint's weights
    head: HeadConfig
    config: TrainConfig
    history: list[dict[str, float]]
    best_epoch: int
    best_metrics: dict[str, float]
    checkpoints: list[Checkpoint] = field(default_factory=list)  # best first
    seconds: float = 0.0
    loss_counts: np.ndarray | None = None  # the seesaw loss's class counts after training


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise HeadsError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def sample_weights(train_labels: np.ndarray, num_outputs: int, sampler: str,
                   val_labels: np.ndarray | None = None, val_prior: float = 0.5) -> np.ndarray | None:
    """Per-row sampling weights, or None for plain shuffling.

    ``balanced``: 1 / training count of the row's class.
    ``val_matched``: (validation count + ``val_prior``) / training count, so the
    training stream follows the validation class distribution (paper §2.3.3).
    """
    if sampler == "shuffle":
        return None
    n_train = np.bincount(train_labels, minlength=num_outputs).astype(np.float64)
    per_class = 1.0 / np.maximum(n_train, 1)
    if sampler == "val_matched":
        if val_labels is None:
            raise HeadsError("sampler 'val_matched' needs validation data; pass val or use 'balanced'")
        known = val_labels[(val_labels >= 0) & (val_labels < num_outputs)]
        n_val = np.bincount(known, minlength=num_outputs).astype(np.float64)
        per_class = (n_val + val_prior) * per_class
    return per_class[train_labels]


def _training_labels(data: HeadData, head: HeadConfig) -> tuple[np.ndarray, np.ndarray]:
    """(row mask, labels): unknown rows map to the unknown column, or are dropped without one."""
    labels = data.labels.copy()
    if (labels >= head.num_classes).any():
        bad = int(labels[labels >= head.num_classes][0])
        raise HeadsError(f"label index {bad} is outside 0..{head.num_classes - 1}; "
                         "map class ids to indices into the head's class list")
    unknown = labels < 0
    if head.unknown_output:
        labels[unknown] = head.num_classes
        return np.ones(len(labels), dtype=bool), labels
    return ~unknown, labels


def _poison_targets(data: HeadData, poisonous: np.ndarray) -> np.ndarray:
    if data.poison is not None:
        return np.asarray(data.poison, dtype=bool)
    known = data.labels >= 0
    out = np.zeros(len(data), dtype=bool)
    out[known] = poisonous[data.labels[known]]
    return out


def train_head(head: HeadConfig, train: HeadData, val: HeadData | None, config: TrainConfig,
               poisonous: np.ndarray | None = None) -> TrainResult:
    """Train a new head from ``head`` (a config) on ``train``; evaluate on ``val`` each epoch.

    ``poisonous`` is a bool flag per class index (default: none poisonous).
    Two calls with the same inputs and seed give identical weights (on one device).
    """
    config.validate()
    t_start = time.perf_counter()
    poisonous = (np.zeros(head.num_classes, dtype=bool) if poisonous is None
                 else np.asarray(poisonous, dtype=bool))
    if poisonous.shape != (head.num_classes,):
        raise HeadsError(f"poisonous has shape {poisonous.shape}, expected ({head.num_classes},)")
    if train.embeddings.shape[1] != head.embed_dim:
        raise HeadsError(f"embeddings have {train.embeddings.shape[1]} dims, head expects {head.embed_dim}")
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = build_head(head).to(device)

    keep, labels = _training_labels(train, head)
    n = int(keep.sum())
    if n == 0:
        raise HeadsError("no training rows with a known class; check the labels")

    def to_dev(a, dtype):
        if a is None:
            return None
        a = np.asarray(a) if keep.all() else np.asarray(a)[keep]
        return torch.as_tensor(a, dtype=dtype).to(device)

    # Everything lives on the device once; batches are slices of a permutation.
    X = to_dev(train.embeddings, torch.float32)
    M = to_dev(train.metadata, torch.float32) if head.meta_dim else None
    Y = to_dev(labels, torch.long)
    P = to_dev(_poison_targets(train, poisonous), torch.float32)
    G = to_dev(train.genus, torch.long) if head.num_genus else None
    Fm = to_dev(train.family, torch.long) if head.num_family else None

    counts = np.bincount(labels[keep], minlength=head.num_outputs)
    if config.loss == "seesaw" and config.seesaw_counts == "accumulate":
        counts = None  # the loss counts the labels of the batches it is given
    criterion = HeadLoss(species_loss(config.loss, head.num_outputs, counts=counts), poisonous,
                         alpha=config.poison_weight, beta=config.taxonomy_weight,
                         poison_mode=config.poison_mode).to(device)
    weights = sample_weights(labels[keep], head.num_outputs, config.sampler,
                             None if val is None else val.labels, config.val_prior)
    weights_t = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    iters = math.ceil(n / config.batch_size)
    if config.scheduler == "cosine":  # stepped once per epoch: no per-batch cost
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=max(1, config.restart_epochs), eta_min=config.min_lr)
    elif config.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max" if MONITORS[config.monitor] else "min", factor=0.5, patience=2)
    else:
        sched = None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=device.type == "cuda" and config.amp)
    skip_single = getattr(head, "norm", None) == "batch"  # BatchNorm cannot train on one row

    higher = MONITORS[config.monitor]
    history: list[dict[str, float]] = []
    best: list[Checkpoint] = []
    stale = 0
    bar = tqdm(total=config.epochs * iters, desc=f"train {head.kind}", unit="batch",
               disable=None if config.progress else True, leave=False)  # None: terminals only
    for epoch in range(1, config.epochs + 1):
        model.train()
        criterion.train()
        t0 = time.perf_counter()
        if weights_t is None:
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.multinomial(weights_t, n, replacement=True, generator=gen)
        order = order.to(device)
        total = torch.zeros((), device=device)
        for b in range(iters):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            if skip_single and len(idx) < 2:
                continue
            with autocast:
                out = model(X[idx], None if M is None else M[idx])
                loss = criterion(out, Y[idx], P[idx], None if G is None else G[idx],
                                 None if Fm is None else Fm[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            total.add_(loss.detach(), alpha=len(idx))  # no host sync inside the epoch
            bar.update(1)
        train_loss = float(total) / n
        train_seconds = time.perf_counter() - t0
        row: dict[str, float] = {"epoch": epoch, "train_loss": train_loss,
                                 "train_seconds": train_seconds,
                                 "lr": opt.param_groups[0]["lr"]}
        if val is not None and len(val):
            row.update(evaluate(model, val, head, poisonous, criterion, config.eval_batch_size))
            score = row[config.monitor]
        else:
            score = train_loss
        history.append(row)
        if config.scheduler == "plateau":
            sched.step(score)
        elif config.scheduler == "cosine":
            sched.step()
        bar.set_postfix({k: round(row[k], 4) for k in ("train_loss", "loss", "accuracy", "track3")
                         if k in row})
        log.info("epoch %d/%d %s", epoch, config.epochs,
                 " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))

        improved = not best or (score > best[0].score if higher else score < best[0].score)
        if len(best) < config.keep or (score > best[-1].score if higher else score < best[-1].score):
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best.append(Checkpoint(epoch, score, state))
            best.sort(key=lambda c: -c.score if higher else c.score)
            del best[config.keep:]
        stale = 0 if improved else stale + 1
        if config.patience and stale >= config.patience:
            log.info("early stop at epoch %d: no %s improvement for %d epochs",
                     epoch, config.monitor, stale)
            break
    bar.close()
    if config.progress and bar.disable:  # no bar drawn (not a terminal): one summary line
        log.info("train %s: %d epochs in %.1f s", head.kind, len(history),
                 time.perf_counter() - t_start)

    model.load_state_dict(best[0].state)
    model.eval()
    best_row = next(r for r in history if r["epoch"] == best[0].epoch)
    seesaw_counts = getattr(criterion.species, "counts", None)
    return TrainResult(model=model, head=copy.deepcopy(head), config=copy.deepcopy(config),
                       history=history, best_epoch=best[0].epoch, best_metrics=dict(best_row),
                       checkpoints=best, seconds=time.perf_counter() - t_start,
                       loss_counts=None if seesaw_counts is None else seesaw_counts.cpu().numpy())


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: HeadData, head: HeadConfig, poisonous: np.ndarray,
             criterion: HeadLoss | None = None, batch_size: int = 8192) -> dict[str, float]:
    """Loss over all rows, then per-observation scores (image probabilities averaged
    per observation first): accuracy, top-3, macro F1, poisonous recall, Tracks 1-4."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    if criterion is not None:
        criterion.eval()
    keep, labels = _training_labels(data, head)
    poison = _poison_targets(data, poisonous)
    logits, total, counted = [], 0.0, 0
    for s in range(0, len(data), batch_size):
        sl = slice(s, s + batch_size)
        x = torch.as_tensor(data.embeddings[sl], device=device)
        m = None if data.metadata is None or not head.meta_dim else torch.as_tensor(
            data.metadata[sl], device=device)
        out: HeadOutput = model(x, m)
        logits.append(out.species.float().cpu().numpy())
        k = torch.as_tensor(keep[sl], device=device)
        if criterion is not None and bool(k.any()):
            sub = HeadOutput(*(None if t is None else t[k] for t in out))
            y = torch.as_tensor(labels[sl], device=device)[k]
            p = torch.as_tensor(poison[sl], device=device, dtype=torch.float32)[k]
            total += float(criterion(sub, y, p)) * int(k.sum())
            counted += int(k.sum())
    model.train(was_training)
    probs = softmax(np.concatenate(logits))
    truth = data.labels
    if data.observation_ids is not None:
        obs, probs = aggregate_by_observation(probs, data.observation_ids)
        _, first = np.unique(data.observation_ids, return_index=True)
        truth = truth[np.sort(first)]
        del obs
    pred = probs.argmax(axis=1)
    pred[pred >= head.num_classes] = -1  # the unknown column
    topk_truth = np.where((truth < 0) & head.unknown_output, head.num_classes, truth)
    pois_ids = np.flatnonzero(poisonous)
    scores = fungiclef_scores(truth, pred, pois_ids)
    return {
        "loss": total / counted if counted else float("nan"),
        "accuracy": scores["accuracy"],
        "top3": topk_accuracy(probs, topk_truth, 3),
        "macro_f1": scores["macro_f1"],
        "poisonous_recall": poisonous_recall(truth, pred, pois_ids),
        "track1": scores["track1"],
        "track2": scores["track2"],
        "track3": scores["track3"],
        "track4": scores["track4"],
        "n_observations": float(scores["n"]),
    }
