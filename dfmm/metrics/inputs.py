"""What every metric takes: labels (0 real/human, 1 fake/AI) and P(fake) scores, as flat arrays of one length;
and the reason a metric that needs both classes is undefined when one is missing."""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_arrays(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probs, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {p.shape}")
    return y, p


def _one_class(n_real: int, n_fake: int) -> str:
    return f"one class only (n real={n_real}, n fake={n_fake})"
