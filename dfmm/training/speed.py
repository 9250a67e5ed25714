"""Speed checks measured in one run, as ratios: the study's notebooks and the ``benchmarks/`` scripts share them.

- :func:`visual_loop_ratio`: the project's training loop reading JPEG files through the real pipeline (decode +
  card augmentation + ``dfmm.training.loop.fit``) against a plain loop over pre-decoded tensors; same model, batch and
  optimiser. Target >= 0.9.
- :func:`text_loop_ratio`: the project's loop on length-bucketed, dynamically padded batches against fixed
  padding to ``max_length`` (and random batches padded to their longest text); same model and texts. Target >= 3.

Both time training steps (forward, backward, optimiser step) on whatever device accelerate picks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dfmm.config import Config, Recipe
from dfmm.data.images import ImageSet, load_image
from dfmm.data.text import TextSet
from dfmm.data.transforms import image_transform
from dfmm.models import TextBranch, VisualBranch
from dfmm.training.loaders import image_loader
from dfmm.training.loop import bce_loss, fit, make_accelerator


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def _plain_visual_loop(model: VisualBranch, x: torch.Tensor, y: torch.Tensor, batch: int, steps: int) -> float:
    """The reference: tensors already decoded and resized, no DataLoader, the same optimiser step."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model.train().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch) % len(x)
        xb = x[idx].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        yb = y[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = bce_loss(model(xb), yb, 0.0, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def visual_loop_ratio(
    images: ImageSet,
    build: Callable[[], VisualBranch],
    *,
    batch: int = 32,
    steps: int = 8,
    size: int = 224,
    workers: int = 0,
    plain_images: int = 0,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.5, 0.5, 0.5),
) -> dict[str, Any]:
    """images/s of our loop and of the plain loop, and their ratio, on ``batch * steps`` images of ``images``.

    ``build`` returns a fresh model (the same init each call). ``plain_images`` decodes only that many for the
    plain loop and cycles them (GPU runs with many steps need not hold every image in memory).
    """
    n = batch * steps
    if len(images) == 0:
        raise ValueError("the speed check needs images, got none")
    # a random draw of n images (cycled when there are fewer, as in a small demo)
    subset = images.subset(np.resize(np.random.default_rng(0).permutation(len(images)), n))
    t = image_transform(size, mean, std, "none")
    m = plain_images or n
    x = torch.stack([t(load_image(s)) for s in subset.sources[:m]])  # decoded up front, not timed
    y = torch.tensor(subset.labels[:m], dtype=torch.float32)
    torch.manual_seed(0)
    _plain_visual_loop(build(), x, y, batch, 2)  # warm-up (allocator, cudnn autotune)
    torch.manual_seed(0)
    plain = _plain_visual_loop(build(), x, y, batch, steps)

    cfg = Config()
    cfg.visual.batch_size, cfg.visual.image_size, cfg.study.num_workers = batch, size, workers
    loader = image_loader(subset, cfg, mean=mean, std=std, seed=0, train=True, augment="card")
    val = image_loader(subset.subset(np.arange(min(n, batch))), cfg, mean=mean, std=std, seed=0)
    torch.manual_seed(0)
    acc = make_accelerator()
    result = fit(build(), loader, val, Recipe(), 1, accelerator=acc, desc="speed check")
    ours = result.history[0]["train_samples_per_s"]
    return {
        "device": device_name(),
        "batch": batch,
        "steps": steps,
        "workers": workers,
        "mixed_precision": str(acc.mixed_precision),
        "plain_img_s": round(plain, 1),
        "ours_img_s": round(ours, 1),
        "ratio": round(ours / plain, 3),
    }


def length_quantile_sample(lengths: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` items at evenly spaced quantiles of ``lengths`` (shortest and longest included)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return order[np.unique(np.round(np.linspace(0, len(order) - 1, min(n, len(order)))).astype(int))]


def text_loop_ratio(
    texts: TextSet,
    build: Callable[[], tuple[TextBranch, Any]],
    *,
    n: int = 160,
    batch: int = 16,
    max_length: int = 512,
    compare_random: bool = True,
) -> dict[str, Any]:
    """samples/s of ``dfmm.training.loop.fit`` with fixed padding, random dynamic padding and our length buckets.

    ``build`` returns (fresh model with the same init, its tokenizer). The ``n`` texts sit at evenly spaced
    quantiles of the token lengths of all ``texts``, so even a short check has the corpus's length distribution
    (64 texts drawn at random from the compact training split had a 90th percentile of 403 tokens against the
    split's 324, and padding matters most for the long tail). Real tokens/s = samples/s x mean unpadded length.
    """
    from dfmm.data.batches import LengthBucketSampler, ShuffledBatchSampler, TokenizedTexts

    _, tokenizer = build()
    pool = np.array(TokenizedTexts(texts, tokenizer, max_length).lengths)
    tokens = TokenizedTexts(texts.subset(length_quantile_sample(pool, n)), tokenizer, max_length)
    lengths = np.array(tokens.lengths)
    n = len(tokens)

    def loader(sampler: Any, pad_to: int | None = None) -> DataLoader:
        return DataLoader(tokens, batch_sampler=sampler, collate_fn=lambda b: tokens.collate(b, pad_to=pad_to))

    loaders = {"fixed": loader(ShuffledBatchSampler(n, batch, 0), max_length)}
    if compare_random:
        loaders["dynamic_random"] = loader(ShuffledBatchSampler(n, batch, 0))
    loaders["ours_bucketed"] = loader(LengthBucketSampler(tokens.lengths, batch, 0))
    val = loader(ShuffledBatchSampler(batch, batch, 0, shuffle=False))
    recipe = Recipe(optimizer="adamw", lr=2e-5, weight_decay=0.01)

    def samples_per_s(train: DataLoader) -> float:
        torch.manual_seed(0)
        model, _ = build()
        result = fit(model, train, val, recipe, 1, accelerator=make_accelerator(), desc="speed check")
        return result.history[0]["train_samples_per_s"]

    samples_per_s(loader(ShuffledBatchSampler(min(n, 2 * batch), batch, 0)))  # warm-up
    out: dict[str, Any] = {
        "device": device_name(),
        "n": n,
        "batch": batch,
        "max_length": max_length,
        "median_tokens": float(np.median(lengths)),
        "p90_tokens": float(np.percentile(lengths, 90)),
        "pool": len(pool),
        "pool_median_tokens": float(np.median(pool)),
        "pool_p90_tokens": float(np.percentile(pool, 90)),
        "cut_at_max": tokens.truncated(),
    }
    for name, train in loaders.items():
        sps = samples_per_s(train)
        out[f"{name}_samples_s"] = round(sps, 2)
        out[f"{name}_real_tokens_s"] = round(sps * float(lengths.mean()), 1)
    out["ratio"] = round(out["ours_bucketed_samples_s"] / out["fixed_samples_s"], 2)
    if compare_random:
        out["ratio_dynamic_random"] = round(out["dynamic_random_samples_s"] / out["fixed_samples_s"], 2)
    return out


def visual_speed_check(cfg: Config, train: ImageSet, backbone: dict[str, Any]) -> dict[str, Any] | None:
    """Notebook 02's check: :func:`visual_loop_ratio` on the training split with the study's batch, steps, image
    size, workers and the backbone's normalisation; None when ``visual.speed_check_steps`` is 0."""
    from dfmm.models.branches import build_visual

    if not cfg.visual.speed_check_steps:
        return None
    return visual_loop_ratio(
        train,
        lambda: build_visual(cfg)[0].to(memory_format=torch.channels_last),
        batch=cfg.visual.batch_size,
        steps=cfg.visual.speed_check_steps,
        size=cfg.visual.image_size,
        workers=cfg.study.num_workers,
        mean=tuple(backbone["mean"]),
        std=tuple(backbone["std"]),
    )


def text_speed_check(cfg: Config, train: TextSet) -> dict[str, Any] | None:
    """Notebook 03's check: :func:`text_loop_ratio` on ``text.speed_check_texts`` training texts at the study's
    batch and ``max_length``; None when that is 0."""
    from dfmm.models.branches import build_text

    if not cfg.text.speed_check_texts:
        return None
    return text_loop_ratio(
        train,
        lambda: build_text(cfg)[:2],
        n=cfg.text.speed_check_texts,
        batch=cfg.text.batch_size,
        max_length=cfg.text.max_length,
        compare_random=False,
    )


def describe_speed(speed: dict[str, Any] | None) -> str:
    """One line for a notebook: the speed check's two rates and their ratio (either branch's)."""
    if speed is None:
        return "speed check skipped (0 steps / texts in the params)"
    if "ours_img_s" in speed:
        return (
            f"ours {speed['ours_img_s']} img/s vs plain {speed['plain_img_s']} img/s: ratio {speed['ratio']:.2f} "
            f"({speed['steps']} batches of {speed['batch']}, {speed['device']})"
        )
    return (
        f"bucketed {speed['ours_bucketed_samples_s']} vs fixed-{speed['max_length']} {speed['fixed_samples_s']} "
        f"samples/s: {speed['ratio']:.2f}x ({speed['n']} texts, median {speed['median_tokens']:.0f} tokens, "
        f"{speed['device']})"
    )
