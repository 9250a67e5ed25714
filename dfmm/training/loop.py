"""The one training loop, for every branch, on Hugging Face ``accelerate``.

The same code runs on a CPU, one GPU, or several GPUs under ``accelerate launch`` with mixed precision (bf16
on GPU by default). A recipe (``dfmm.config.Recipe``) decides the optimiser, learning-rate groups, schedule and
loss; the loop decides nothing. Each epoch is validated (on the loader it is given: the caller's fixed subset of
the validation split, ``data.epoch_val_*``) and the best epoch (validation ROC AUC) is kept. Same
seed, same data -> the same metrics on CPU. Given a state path, the loop saves after every epoch what it needs to
go on, and a run interrupted at any moment resumes from its last complete epoch to the same tensors (CPU, no
DataLoader workers: persistent workers keep random states of their own that a restart cannot restore).

Under ``accelerate launch`` with N processes each process trains on every N-th batch (``shard_for_processes``),
gradients are averaged by DDP (so the effective batch is N x the recipe's batch), and every process validates on
the same validation items, so all of them pick the same best epoch without a gather.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dfmm.config import Recipe
from dfmm.metrics import binary_metrics
from dfmm.models.scoring import _call, _to, predict, sigmoid


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable training items, one message each
    device: str = "cpu"
    mixed_precision: str = "no"


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch (accelerate's ``set_seed``) before a model is built and trained."""
    from accelerate.utils import set_seed

    set_seed(seed)


def make_accelerator(device: str = "auto", mixed_precision: str = "auto") -> Any:
    from accelerate import Accelerator

    cuda = torch.cuda.is_available() and device != "cpu"
    if mixed_precision == "auto":
        mixed_precision = "bf16" if cuda else "no"
    return Accelerator(cpu=not cuda, mixed_precision=mixed_precision)


NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)  # timm's BatchNormAct2d included


def apply_trainable(model: nn.Module, recipe: Recipe) -> None:
    """``recipe.trainable``: ``all`` leaves every parameter learning; ``norm`` freezes all but the affine
    parameters of the normalisation layers and the head (normalisation-only tuning, as GenD (2025) tunes the
    LayerNorms of a frozen encoder; batch-norm running statistics still follow the training data)."""
    if recipe.trainable == "all":
        return
    keep = {id(p) for p in model.head_parameters()}
    keep |= {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Backbone at ``lr``, head at ``lr * head_lr_mult`` (discriminative learning rates); no decay on norms/biases.

    Each group carries ``lr_scale`` (its lr over ``recipe.lr``) and ``head`` (whether it is the head's).
    """
    head_ids = {id(p) for p in model.head_parameters()}
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in head_ids, p.ndim <= 1), []).append(p)
    out = []
    for (is_head, no_decay), params in groups.items():
        scale = recipe.head_lr_mult if is_head else 1.0
        out.append(
            {
                "params": params,
                "lr": recipe.lr * scale,
                "lr_scale": scale,
                "head": is_head,
                "weight_decay": 0.0 if (no_decay and recipe.optimizer != "adam") else recipe.weight_decay,
            }
        )
    return out


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over ``param_groups``, PyTorch's default implementation.

    Not the fused kernels, although on 2 CPU cores a fused AdamW step over the text branch's 22M parameters takes
    13 ms instead of 80 (``benchmarks/cpu_paths.py``): the same formula rounded differently grows, over the
    visual branch's 189 steps, into another model (compact study at 48913d3: visual val AUC of the three seeds
    0.777/0.768/0.767 -> 0.762/0.756/0.766, flipping the accuracy target), for under a minute saved."""
    groups = param_groups(model, recipe)
    if recipe.optimizer == "adam":  # the card: Adam with L2 weight decay
        return torch.optim.Adam(groups, lr=recipe.lr)
    if recipe.optimizer == "sgd":  # SGD with Nesterov momentum 0.9, the usual CNN fine-tuning optimiser
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=recipe.lr)


def lr_factor(step: int, total_steps: int, recipe: Recipe) -> float:
    """Linear warm-up over ``warmup_fraction`` of ``total_steps``, then constant or cosine decay to 0."""
    warmup = int(recipe.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if recipe.schedule == "cosine":
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int) -> Any:
    """One schedule for every parameter group: :func:`lr_factor` of the step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, recipe))


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float, pos_weight: float | None) -> torch.Tensor:
    target = labels * (1.0 - smoothing) + 0.5 * smoothing
    weight = None
    if pos_weight is not None:  # class-balanced: each class contributes half of the loss
        weight = torch.where(labels > 0.5, pos_weight, 1.0).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), weight=weight)


def metric_term(features: torch.Tensor, labels: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Alignment plus uniformity of unit-norm features (Wang & Isola, ICML 2020; the metric-learning part of GenD,
    2025): the mean squared distance between same-class pairs of the batch, plus the log of the mean Gaussian
    potential ``exp(-t d^2)`` over all pairs (lower when the features spread over the sphere). A batch without a
    same-class pair contributes uniformity only."""
    n = features.shape[0]
    if n < 2:
        return features.sum() * 0.0
    d2 = (2.0 - 2.0 * features @ features.T).clamp_min(0.0)  # squared distances of unit vectors
    off = ~torch.eye(n, dtype=torch.bool, device=features.device)
    same = (labels[:, None] == labels[None, :]) & off
    align = d2[same].mean() if bool(same.any()) else d2.new_zeros(())
    uniform = torch.log(torch.exp(-t * d2[off]).mean())
    return align + uniform


def shard_for_processes(loader: Any, accelerator: Any) -> Any:
    """The training loader of this process under ``accelerate launch``: a disjoint share of every epoch's batches.

    Our own batch samplers (pairs, length buckets) are kept and wrapped, rather than handing the loader to
    ``accelerator.prepare`` (which would re-batch it). With one process the loader is returned as it is.
    """
    world = accelerator.num_processes
    if world <= 1:
        return loader
    from torch.utils.data import DataLoader

    from dfmm.data.batches import ShardedBatchSampler

    if len(loader.batch_sampler) < world:
        raise ValueError(f"{len(loader.batch_sampler)} training batches cannot feed {world} processes")
    return DataLoader(
        loader.dataset,
        batch_sampler=ShardedBatchSampler(loader.batch_sampler, accelerator.process_index, world),
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
        persistent_workers=loader.persistent_workers,
        pin_memory=loader.pin_memory,
    )


def _sampler_of(loader: Any) -> Any:
    sampler = loader.batch_sampler
    return getattr(sampler, "inner", sampler)  # ShardedBatchSampler wraps the one that counts epochs


def _rng_states() -> dict[str, Any]:
    """Every random state the loop draws from, as tensors and plain values (loadable with ``weights_only``)."""
    import random

    import numpy as np

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos)},
        "numpy_gauss": [int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    has_gauss, gauss = states["numpy_gauss"]
    np.random.set_state((n["name"], n["keys"].numpy().astype("uint32"), n["pos"], has_gauss, gauss))
    random.setstate(states["python"])


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state after an epoch through a temporary file: a kill leaves the previous epoch's state whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_training_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The state saved after the last complete epoch, or None when there is none or it belongs to another run
    (another config, code or data: its ``fingerprint`` differs). Tensors and plain data only: never unpickles code."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a foreign or damaged file is not a state to resume from
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return None
    return state


class ResumeState(NamedTuple):
    """Where :func:`fit` keeps its state after every epoch, and the digest a saved state must carry to be resumed."""

    path: Path
    fingerprint: str


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    recipe: Recipe,
    epochs: int,
    *,
    accelerator: Any = None,
    pos_weight: float | None = None,
    desc: str = "train",
    resume: ResumeState | None = None,
    cache_dir: Path | None = None,
) -> TrainResult:
    """Train ``model`` for ``epochs``; keep the weights of the best validation epoch (ROC AUC).

    With ``resume`` the loop saves, after every epoch, to ``resume.path`` what it needs to go on: model, optimiser,
    schedule, the best epoch so far, every random state and the sampler's epoch. A run that finds a state there with
    the same ``resume.fingerprint`` (the caller's digest of config, code and data) starts after that epoch; on CPU
    it ends with the same tensors and metrics as a run never interrupted.
    """
    accelerator = accelerator or make_accelerator()
    train_loader = shard_for_processes(train_loader, accelerator)
    optimizer = make_optimizer(model, recipe)
    total = epochs * len(train_loader)
    schedule = make_schedule(optimizer, recipe, total)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    unwrapped = accelerator.unwrap_model(model)
    result = TrainResult(device=str(accelerator.device), mixed_precision=str(accelerator.mixed_precision))
    done = 0
    state_path, fingerprint = resume if resume is not None else (None, "")
    saved = load_training_state(state_path, fingerprint) if state_path is not None else None
    if saved is not None:
        unwrapped.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        r = saved["result"]
        result.history, result.best_epoch, result.best_score = r["history"], r["best_epoch"], r["best_score"]
        result.best_state, result.skipped = saved["best_state"], r["skipped"]
        done = saved["epoch"]
        _sampler_of(train_loader).epoch = saved["sampler_epoch"]
        _set_rng_states(saved["rng"])
    for epoch in range(done + 1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(train_loader, desc=f"{desc} epoch {epoch}/{epochs}", leave=False, mininterval=10, disable=None)
        for batch in bar:
            result.skipped.extend(batch["skipped"])
            if batch["inputs"] is None:
                continue
            inputs = _to(batch["inputs"], accelerator.device)
            labels = batch["labels"].to(accelerator.device)
            with accelerator.autocast():
                if recipe.metric_loss > 0:
                    logits, features = model(inputs, return_features=True)
                    loss = bce_loss(logits, labels, recipe.label_smoothing, pos_weight)
                    loss = loss + recipe.metric_loss * metric_term(features.float(), labels)
                else:
                    logits = _call(model, inputs)
                    loss = bce_loss(logits, labels, recipe.label_smoothing, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            n = labels.numel()
            seen += n
            loss_sum += float(loss.detach()) * n
            correct += int(((logits.detach() > 0).float() == labels).sum())
            rate = seen / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", rate=f"{rate:.1f}/s", refresh=False)
        train_s = time.perf_counter() - t0
        pred = predict(unwrapped, val_loader, accelerator, tta=False, desc="validate", cache_dir=cache_dir)
        val = binary_metrics(pred["labels"], sigmoid(pred["logits"]))
        val_loss = (
            float(F.binary_cross_entropy_with_logits(torch.tensor(pred["logits"]), torch.tensor(pred["labels"])))
            if len(pred["labels"])
            else float("nan")
        )
        result.history.append(
            {
                "epoch": epoch,
                "train_items": seen,  # this process's share under accelerate launch
                "train_loss": loss_sum / max(seen, 1),
                "train_accuracy": correct / max(seen, 1),
                "val_loss": val_loss,
                "val_accuracy": val["accuracy"],
                "val_balanced_accuracy": val["balanced_accuracy"],
                "val_auc": val["auc"],
                "val_items": len(pred["labels"]),  # the items the best epoch is chosen on (data.epoch_val_*)
                "train_samples_per_s": seen / train_s if train_s > 0 else 0.0,
                "epoch_seconds": time.perf_counter() - t0,
                "lr": float(optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_scale"]),  # recipe's lr
            }
        )
        score = val["auc"] if not math.isnan(val["auc"]) else val["balanced_accuracy"]
        if score > result.best_score:
            result.best_score, result.best_epoch = score, epoch
            result.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in unwrapped.state_dict().items()})
        if state_path is not None and accelerator.is_main_process:
            save_training_state(
                state_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "best_state": result.best_state,
                    "result": {
                        "history": result.history,
                        "best_epoch": result.best_epoch,
                        "best_score": result.best_score,
                        "skipped": result.skipped,
                    },
                    "sampler_epoch": _sampler_of(train_loader).epoch,
                    "rng": _rng_states(),
                },
            )
    if result.best_state is not None:
        unwrapped.load_state_dict(result.best_state)
    return result
