"""Two CPU-path choices of the compact study, each measured as a ratio in one run.

    python benchmarks/cpu_paths.py [--rounds 8] [--seconds 2] [--size 224]

1. ``visual.eval_batch_size``: images/s of the visual branch's scoring forward pass (``dfmm.models.branches.build_visual``,
   channels-last, no gradients) at batch 8 against batch 32. On 2 cores the activations of a 32-image batch at
   224 px outgrow the caches; the study scores at 8 (``dfmm.config.VisualConfig``).
2. Fused AdamW: milliseconds per optimiser step over the text branch's parameters (``dfmm.models.branches.build_text``,
   22M with the MiniLM encoder) and the visual branch's, fused against PyTorch's default for CPU tensors (a loop
   over parameters). The study keeps the default (``dfmm.training.loop.make_optimizer`` says why): this is the saving it
   leaves.

The two settings of a pair are timed alternately, ``--rounds`` times ``--seconds`` each, so that a noisy
neighbour on a shared machine slows both; the ratio reported is the median of the per-round ratios. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from dfmm.config import Config
from dfmm.models.branches import build_text, build_visual
from dfmm.training.speed import device_name


def _rate(step: Callable[[], int], seconds: float) -> float:
    """Items (or steps) per second of ``step`` (which returns how many it did) over about ``seconds``."""
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        n += step()
    return n / (time.perf_counter() - t0)


def _paired(a: Callable[[], int], b: Callable[[], int], rounds: int, seconds: float) -> dict[str, float]:
    a(), b()  # warm-up: lazy kernels, allocator
    pairs = [(_rate(a, seconds), _rate(b, seconds)) for _ in range(rounds)]
    return {
        "a": round(statistics.median(p[0] for p in pairs), 2),
        "b": round(statistics.median(p[1] for p in pairs), 2),
        "ratio": round(statistics.median(p[0] / p[1] for p in pairs), 3),
        "ratio_min": round(min(p[0] / p[1] for p in pairs), 3),
        "ratio_max": round(max(p[0] / p[1] for p in pairs), 3),
    }


def eval_batches(size: int, rounds: int, seconds: float, small: int, large: int) -> dict[str, object]:
    cfg = Config()
    cfg.visual.image_size = size
    torch.manual_seed(0)
    model, info = build_visual(cfg)
    model = model.to(memory_format=torch.channels_last).eval()
    x = {b: torch.randn(b, 3, size, size).contiguous(memory_format=torch.channels_last) for b in (small, large)}

    def score(b: int) -> Callable[[], int]:
        def step() -> int:
            with torch.no_grad():
                model(x[b])
            return b

        return step

    r = _paired(score(small), score(large), rounds, seconds)
    return {"backbone": info.architecture, "size": size, "batches": [small, large], "img_s": [r["a"], r["b"]]} | {
        k: r[k] for k in ("ratio", "ratio_min", "ratio_max")
    }


def optimizer_steps(model: torch.nn.Module, rounds: int, seconds: float) -> dict[str, object]:
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    fused = torch.optim.AdamW(params, lr=1e-5, fused=True)
    default = torch.optim.AdamW(params, lr=1e-5)  # foreach=None: the per-parameter loop for CPU tensors

    def stepper(opt: torch.optim.Optimizer) -> Callable[[], int]:
        def step() -> int:
            opt.step()
            return 1

        return step

    r = _paired(stepper(fused), stepper(default), rounds, seconds)
    return {
        "parameters": sum(p.numel() for p in params),
        "ms_per_step": [round(1000 / r["a"], 2), round(1000 / r["b"], 2)],  # fused, default
        "speedup": r["ratio"],
        "speedup_min": r["ratio_min"],
        "speedup_max": r["ratio_max"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=224, help="image size for the scoring pass")
    ap.add_argument("--small-batch", type=int, default=8)
    ap.add_argument("--large-batch", type=int, default=32)
    a = ap.parse_args()
    cfg = Config()
    text, _, text_info = build_text(cfg)
    visual, _ = build_visual(cfg)
    out = {
        "device": device_name(),
        "rounds": a.rounds,
        "seconds": a.seconds,
        "eval_batch": eval_batches(a.size, a.rounds, a.seconds, a.small_batch, a.large_batch),
        "fused_adamw_text": {"encoder": text_info.architecture} | optimizer_steps(text, a.rounds, a.seconds),
        "fused_adamw_visual": optimizer_steps(visual, a.rounds, a.seconds),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
