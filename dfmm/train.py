"""The one training loop, for every branch, on Hugging Face ``accelerate``.

The same code runs on a CPU, one GPU, or several GPUs under ``accelerate launch`` with mixed precision (bf16
on GPU by default). A recipe (``dfmm.config.Recipe``) decides the optimiser, learning-rate groups, schedule and
loss; the loop decides nothing. Each epoch is validated, the best epoch (validation ROC AUC) is kept, and early
stopping is optional. With ``recipe.ema`` the loop keeps an exponential moving average of the weights (and
batch-norm statistics); each epoch validates the average, and the best average is what is kept. Same seed, same
data -> the same metrics on CPU.

Under ``accelerate launch`` with N processes each process trains on every N-th batch (``shard_for_processes``),
gradients are averaged by DDP (so the effective batch is N x the recipe's batch), and every process validates on
the whole validation split, so all of them pick the same best epoch without a gather.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dfmm.config import Recipe
from dfmm.metrics import binary_metrics
from dfmm.scoring import _call, _to, predict, sigmoid


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    skipped: list[str] = field(default_factory=list)  # unreadable training items, one message each
    device: str = "cpu"
    mixed_precision: str = "no"


def make_accelerator(device: str = "auto", mixed_precision: str = "auto") -> Any:
    from accelerate import Accelerator

    cuda = torch.cuda.is_available() and device != "cpu"
    if mixed_precision == "auto":
        mixed_precision = "bf16" if cuda else "no"
    return Accelerator(cpu=not cuda, mixed_precision=mixed_precision)


def layer_depths(model: nn.Module) -> dict[str, int]:
    """Depth of each parameter from the input: stem/embeddings 0, block or layer i -> i + 1, the rest after them.

    Works by name for timm EfficientNets (``blocks.i``) and Hugging Face encoders (``layer.i``), so layer-wise
    learning-rate decay needs nothing from the model classes.
    """
    index = {}
    for name, _ in model.named_parameters():
        m = re.search(r"\.(?:blocks|layer)\.(\d+)\.", f".{name}")
        index[name] = int(m.group(1)) + 1 if m else None
    deepest = max((d for d in index.values() if d is not None), default=0)
    first_block = next((i for i, d in enumerate(index.values()) if d is not None), len(index))
    return {
        name: d if d is not None else (0 if i < first_block else deepest + 1)
        for i, (name, d) in enumerate(index.items())
    }


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """Backbone at ``lr``, head at ``lr * head_lr_mult`` (discriminative learning rates); no decay on norms/biases.

    With ``layer_decay`` < 1 a backbone parameter at depth d gets ``lr * layer_decay ** (top - d)``: the layers
    nearest the input move least (layer-wise learning-rate decay, BEiT); on DFDC at the compact budget that cost
    AUC, the artefacts live in low-level features (README, "Recipes").
    Each group carries ``lr_scale`` (its lr over ``recipe.lr``) and ``head`` (whether it is the head's).
    """
    head_ids = {id(p) for p in model.head_parameters()}
    depths = layer_depths(model) if recipe.layer_decay < 1.0 else {}
    top = max(depths.values(), default=0)
    groups: dict[tuple[bool, bool, int], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = id(p) in head_ids
        key = (is_head, p.ndim <= 1, 0 if is_head else top - depths.get(name, top))
        groups.setdefault(key, []).append(p)
    out = []
    for (is_head, no_decay, below_top), params in groups.items():
        scale = recipe.head_lr_mult if is_head else recipe.layer_decay**below_top
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
    """One schedule for every group; with ``head_only_fraction`` the backbone waits that share of the steps at lr 0
    (the head learns on fixed features first: LP-FT, Kumar et al. 2022) and then runs its own warm-up and decay
    over the steps left."""
    frozen = int(recipe.head_only_fraction * total_steps)

    def head(step: int) -> float:
        return lr_factor(step, total_steps, recipe)

    def backbone(step: int) -> float:
        return 0.0 if step < frozen else lr_factor(step - frozen, total_steps - frozen, recipe)

    lambdas = [head if g.get("head") else backbone for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float, pos_weight: float | None) -> torch.Tensor:
    target = labels * (1.0 - smoothing) + 0.5 * smoothing
    weight = None
    if pos_weight is not None:  # class-balanced: each class contributes half of the loss
        weight = torch.where(labels > 0.5, pos_weight, 1.0).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits.float(), target.float(), weight=weight)


def pair_ranking_loss(logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Mean softplus(real - fake) over (fake, real) pairs of one group in the batch; 0 when there are none.

    A DFDC fake and the real video it was made from share scene, pose and lighting: ranking the fake above its
    own real isolates the manipulation, the cue the detector must learn (a logistic pairwise ranking loss).
    """
    same = groups.view(-1, 1) == groups.view(1, -1)
    pairs = same & (labels.view(-1, 1) > 0.5) & (labels.view(1, -1) < 0.5)  # rows fake, columns real
    if not bool(pairs.any()):
        return logits.float().sum() * 0.0
    diff = logits.float().view(-1, 1) - logits.float().view(1, -1)
    return F.softplus(-diff[pairs]).mean()


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


class WeightAverage:
    """Exponential moving average of a model's floating-point state (parameters and batch-norm statistics).

    ``update`` after each optimiser step: avg = decay * avg + (1 - decay) * current. ``swapped_in`` puts the
    average into the model for validation and puts the trained weights back afterwards.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].lerp_(v.detach(), 1.0 - self.decay)
            else:  # counters such as num_batches_tracked
                self.state[k].copy_(v)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(trained)


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    recipe: Recipe,
    epochs: int,
    *,
    accelerator: Any = None,
    pos_weight: float | None = None,
    patience: int = 0,
    desc: str = "train",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``epochs``; keep the weights of the best validation epoch (ROC AUC)."""
    accelerator = accelerator or make_accelerator()
    train_loader = shard_for_processes(train_loader, accelerator)
    optimizer = make_optimizer(model, recipe)
    total = epochs * len(train_loader)
    schedule = make_schedule(optimizer, recipe, total)
    model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
    result = TrainResult(device=str(accelerator.device), mixed_precision=str(accelerator.mixed_precision))
    average = WeightAverage(accelerator.unwrap_model(model), recipe.ema) if recipe.ema > 0 else None
    stale = 0
    for epoch in range(1, epochs + 1):
        model.train()
        if recipe.freeze_norm:  # small data, small batches: batch statistics are noisier than ImageNet's
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
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
                logits = _call(model, inputs)
                loss = bce_loss(logits, labels, recipe.label_smoothing, pos_weight)
                if recipe.pair_loss > 0 and batch.get("groups") is not None:
                    groups = batch["groups"].to(accelerator.device)
                    loss = loss + recipe.pair_loss * pair_ranking_loss(logits, labels, groups)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if recipe.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            schedule.step()
            if average is not None:
                average.update(accelerator.unwrap_model(model))
            n = labels.numel()
            seen += n
            loss_sum += float(loss.detach()) * n
            correct += int(((logits.detach() > 0).float() == labels).sum())
            rate = seen / (time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", rate=f"{rate:.1f}/s", refresh=False)
        train_s = time.perf_counter() - t0
        unwrapped = accelerator.unwrap_model(model)
        with average.swapped_in(unwrapped) if average is not None else contextlib.nullcontext(unwrapped) as evaluated:
            pred = predict(evaluated, val_loader, accelerator, tta=False, desc="validate")
        val = binary_metrics(pred["labels"], sigmoid(pred["logits"]))
        val_loss = (
            float(F.binary_cross_entropy_with_logits(torch.tensor(pred["logits"]), torch.tensor(pred["labels"])))
            if len(pred["labels"])
            else float("nan")
        )
        row = {
            "epoch": epoch,
            "train_items": seen,  # this process's share under accelerate launch
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val["accuracy"],
            "val_balanced_accuracy": val["balanced_accuracy"],
            "val_auc": val["auc"],
            "train_samples_per_s": seen / train_s if train_s > 0 else 0.0,
            "epoch_seconds": time.perf_counter() - t0,
            "lr": float(optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_scale"]),  # the recipe's lr
        }
        result.history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        score = val["auc"] if not math.isnan(val["auc"]) else val["balanced_accuracy"]
        if score > result.best_score:
            result.best_score, result.best_epoch, stale = score, epoch, 0
            validated = average.state if average is not None else unwrapped.state_dict()
            result.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in validated.items()})
        else:
            stale += 1
            if patience and stale >= patience:
                break
    if result.best_state is not None:
        unwrapped.load_state_dict(result.best_state)
    return result
