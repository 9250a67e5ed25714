"""What the bootstrap confidence intervals cost: ``dfmm.metrics.bootstrap_ci`` and ``paired_bootstrap`` against
``binary_metrics`` and against a plain loop that scores every resample with sklearn, measured in one run.

    python benchmarks/bootstrap_cost.py [--resamples 1000] [--rows 40] [--repeats 5]

Synthetic scores (balanced labels, AUC about 0.76, scores rounded to 3 decimals so that ties occur as in real
model outputs). Each timing is the median of ``--repeats`` runs; the loop is timed on 50 resamples and scaled.
The report estimate assumes one ``metrics_with_ci`` per table row at n = 2,400.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from dfmm.metrics import binary_metrics, bootstrap_ci, metrics_with_ci, paired_bootstrap


def _scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    logit = rng.normal(size=n) + 1.0 * (y - 0.5)
    return y, np.round(1 / (1 + np.exp(-logit)), 3), np.round(1 / (1 + np.exp(-logit - rng.normal(0, 1, n))), 3)


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _loop(y: np.ndarray, p: np.ndarray, resamples: int) -> None:
    """The unvectorised reference: draw, index, call sklearn, once per resample (AUC only)."""
    rng = np.random.default_rng(0)
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        roc_auc_score(y[idx], p[idx])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=40, help="table rows in a report, for the estimate")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    r = a.resamples
    print(f"bootstrap cost, {r} resamples, median of {a.repeats} runs")
    for n in (2400, 1000):
        y, p, q = _scores(n)
        groups = np.arange(n) // 4  # e.g. a real face with 3 fakes
        point = _median_s(lambda y=y, p=p: binary_metrics(y, p), a.repeats)
        boot = _median_s(lambda y=y, p=p: bootstrap_ci(y, p, n_resamples=r), a.repeats)
        grouped = _median_s(lambda y=y, p=p, g=groups: bootstrap_ci(y, p, groups=g, n_resamples=r), a.repeats)
        paired = _median_s(lambda y=y, p=p, q=q: paired_bootstrap(y, p, q, n_resamples=r), a.repeats)
        loop = _median_s(lambda y=y, p=p: _loop(y, p, 50), max(1, a.repeats // 2)) * r / 50
        print(f"n={n}:")
        print(f"  binary_metrics                        {point:8.4f} s")
        print(f"  bootstrap_ci (4 metrics, items)       {boot:8.4f} s  = {boot / point:6.1f} x binary_metrics")
        print(f"  bootstrap_ci (4 metrics, groups of 4) {grouped:8.4f} s")
        print(f"  paired_bootstrap (AUC)                {paired:8.4f} s")
        print(f"  sklearn loop, AUC only (scaled)       {loop:8.4f} s  = {loop / boot:6.1f} x bootstrap_ci")
    y, p, q = _scores(2400)
    row = _median_s(lambda: metrics_with_ci(y, p, n_resamples=r), a.repeats)
    print(f"report estimate: {a.rows} rows x metrics_with_ci at n=2400 = {a.rows} x {row:.3f} s = {a.rows * row:.1f} s")


if __name__ == "__main__":
    main()
