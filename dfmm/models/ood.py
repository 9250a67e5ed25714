""" "Unlike the training data": a kNN distance on frozen generic features, stored with the checkpoint.

A branch fine-tuned to detect one source's manipulation keeps only that cue in its features: faces of unseen
sources (GAN, Stable Diffusion, photo edits) sit *closer* to its training features than its own held-out faces
(issue 26: AUROC 0.22-0.47). The backbone's generic weights before fine-tuning (ImageNet Lite0 for faces,
all-MiniLM for texts) keep what tells sources apart, so the distance is taken there.

An :class:`OodReference` holds unit-norm frozen features of up to ``MAX_REFERENCE`` training items and the
distances of held-out in-domain validation items. An input's distance is its mean cosine distance to its ``k``
nearest reference items (kNN, Sun et al. 2022, "Out-of-distribution detection with deep nearest neighbors").
Its ``in_distribution`` score is the share of validation items at least as far (an empirical p-value: 0.5 is a
typical in-domain item, 0.01 is farther than 99% of them); ``uncertain`` flags inputs farther than the distance
that keeps ``coverage`` (95%) of validation items. The frozen features come from the same branch classes with
the backbone's pretrained weights (``dfmm.models.branches.frozen_branch``), so an input is preprocessed once.

In a checkpoint the reference is plain data: ``meta["ood"][branch]`` (backbone spec, k, coverage, threshold)
and the tensors ``ood.<branch>.reference`` and ``ood.<branch>.val_distances`` in its state, kept apart from
the model's own tensors (``split_state``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.errors import CheckpointError

PREFIX = "ood."
K = 10
COVERAGE = 0.95
MAX_REFERENCE = 2000
MAX_VALIDATION = 5000
BRANCHES = ("visual", "text")


def _one_blas_thread() -> Any:
    """One BLAS thread for the small distance product: OpenBLAS's idle threads spin after a call and slowed the
    model's next forward pass under OpenVINO by a quarter (dfmm score: 40 -> 48 images/s on 2 cores with one)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


_BLAS: Any = None


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class OodReference:
    """Frozen-feature reference of one branch: see the module docstring."""

    backbone: str  # the backbone spec the frozen features come from (e.g. package:efficientnet-lite0)
    reference: np.ndarray  # (n, d) unit-norm features of training items
    val_distances: np.ndarray  # sorted kNN distances of held-out in-domain validation items
    k: int = K
    coverage: float = COVERAGE

    @property
    def threshold(self) -> float:
        """The distance that keeps ``coverage`` of the validation items (beyond it: ``uncertain``)."""
        return float(np.quantile(self.val_distances, self.coverage, method="higher"))

    def distances(self, features: Any, *, exclude_self: bool = False) -> np.ndarray:
        """Mean cosine distance of each row to its ``k`` nearest reference items (``exclude_self``: the rows are
        the reference items themselves, each one's own zero distance left out)."""
        f = _unit(features)
        if len(f) == 0:
            return np.zeros(0)
        with _one_blas_thread():
            sims = f @ self.reference.T
        k = min(self.k + int(exclude_self), self.reference.shape[0])
        top = -np.partition(-sims, k - 1, axis=1)[:, :k]
        top = np.sort(top, axis=1)[:, ::-1][:, int(exclude_self) :]
        return (1.0 - top).mean(axis=1)

    def in_distribution(self, distances: Any) -> np.ndarray:
        """Share of validation items at least as far as each distance (1 = nearer than all of them)."""
        d = np.atleast_1d(np.asarray(distances, dtype=float))
        n = len(self.val_distances)
        return (n - np.searchsorted(self.val_distances, d, side="left")) / n

    def judge(self, distances: Any) -> list[dict[str, Any]]:
        """What a classify result carries for each distance: ``in_distribution``, ``uncertain`` and its reason."""
        t = self.threshold
        out = []
        for d, s in zip(np.atleast_1d(distances), self.in_distribution(distances), strict=True):
            far = bool(d > t)
            reason = (
                f"unlike the training data: frozen-feature distance {d:.3f} > {t:.3f}, farther than "
                f"{1 - s:.1%} of in-domain validation items"
                if far
                else None
            )
            out.append(
                {"in_distribution": float(s), "ood_distance": float(d), "uncertain": far, "uncertain_reason": reason}
            )
        return out

    # ------------------------------------------------------------------------------------------ checkpoint
    def to_checkpoint(self, branch: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {"backbone": self.backbone, "k": self.k, "coverage": self.coverage, "threshold": self.threshold}
        state = {
            f"{PREFIX}{branch}.reference": torch.from_numpy(np.ascontiguousarray(self.reference, dtype=np.float32)),
            f"{PREFIX}{branch}.val_distances": torch.from_numpy(np.asarray(self.val_distances, dtype=np.float64)),
        }
        return meta, state

    @classmethod
    def from_checkpoint(cls, branch: str, meta: Any, state: dict[str, torch.Tensor], path: str | Path) -> OodReference:
        """The reference a checkpoint stores, or one ``CheckpointError`` naming the key that is wrong."""
        where = f"{path}: metadata ood.{branch}"
        if not isinstance(meta, dict):
            raise CheckpointError(f"{where}: expected an object, got {type(meta).__name__}")
        ref = state.get(f"{PREFIX}{branch}.reference")
        val = state.get(f"{PREFIX}{branch}.val_distances")
        if ref is None or val is None:
            raise CheckpointError(f"{where}: the state has no {PREFIX}{branch}.reference / .val_distances tensors")
        if ref.ndim != 2 or not (1 <= ref.shape[0] <= MAX_REFERENCE) or not (1 <= ref.shape[1] <= 8192):
            raise CheckpointError(f"{where}: reference has shape {list(ref.shape)}, expected (1..{MAX_REFERENCE}, d)")
        if val.ndim != 1 or not (1 <= val.shape[0] <= MAX_VALIDATION):
            raise CheckpointError(
                f"{where}: val_distances has shape {list(val.shape)}, expected (1..{MAX_VALIDATION},)"
            )
        backbone, k, coverage = meta.get("backbone"), meta.get("k", K), meta.get("coverage", COVERAGE)
        if not isinstance(backbone, str) or not backbone:
            raise CheckpointError(
                f"{where}.backbone: expected the backbone spec (a non-empty string), got {backbone!r}"
            )
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= ref.shape[0]:
            raise CheckpointError(f"{where}.k = {k!r}: expected an integer in 1..{ref.shape[0]} (the reference size)")
        if not isinstance(coverage, (int, float)) or isinstance(coverage, bool) or not 0.5 <= coverage < 1:
            raise CheckpointError(f"{where}.coverage = {coverage!r}: expected a number in [0.5, 1)")
        return cls(backbone, _unit(ref.numpy()), np.sort(val.numpy().astype(float)), int(k), float(coverage))


def fit_reference(
    backbone: str,
    train_features: Any,
    val_features: Any,
    *,
    k: int = K,
    coverage: float = COVERAGE,
    max_reference: int = MAX_REFERENCE,
    seed: int = 0,
) -> OodReference:
    """A reference of at most ``max_reference`` training items (a seeded sample) with the distances of the
    validation items (at most ``MAX_VALIDATION``, seeded) that set the ``coverage`` threshold."""
    train, val = _unit(train_features), _unit(val_features)
    if len(train) < 2 or len(val) < 1:
        raise ValueError(f"fit_reference: needs >= 2 training and >= 1 validation items, got {len(train)}, {len(val)}")
    rng = np.random.default_rng(seed)
    max_reference = min(max_reference, MAX_REFERENCE)  # what a checkpoint may hold (from_checkpoint)
    if len(train) > max_reference:
        train = train[np.sort(rng.choice(len(train), max_reference, replace=False))]
    if len(val) > MAX_VALIDATION:
        val = val[np.sort(rng.choice(len(val), MAX_VALIDATION, replace=False))]
    k = min(k, len(train))
    draft = OodReference(backbone, train, np.zeros(1), k, coverage)
    return OodReference(backbone, train, np.sort(draft.distances(val)), k, coverage)


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the model's tensors, the OOD reference tensors) of a checkpoint state."""
    model = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    return model, {k: v for k, v in state.items() if k.startswith(PREFIX)}


def references_of(
    meta: dict[str, Any], ood_state: dict[str, torch.Tensor], path: str | Path
) -> dict[str, OodReference]:
    """Every branch's reference a checkpoint stores ({} for checkpoints written before issue 26)."""
    section = meta.get("ood") or {}
    if not isinstance(section, dict):
        raise CheckpointError(f"{path}: metadata 'ood' is a {type(section).__name__}, expected an object")
    unknown = sorted(set(section) - set(BRANCHES))
    if unknown:
        raise CheckpointError(f"{path}: metadata ood.{unknown[0]}: unknown branch (expected visual or text)")
    stray = [k for k in ood_state if k.split(".")[1] not in section]
    if stray:
        raise CheckpointError(f"{path}: tensor '{stray[0]}' has no metadata ood section")
    return {b: OodReference.from_checkpoint(b, section[b], ood_state, path) for b in section}


def selective(labels: Any, predicted_fake: Any, kept: Any) -> dict[str, Any]:
    """Accuracy on all items and on the items the flag keeps (selective accuracy at that coverage)."""
    y, yhat, keep = (np.asarray(a).astype(bool) for a in (labels, predicted_fake, kept))
    right = y == yhat
    n_kept = int(keep.sum())
    return {
        "n": len(y),
        "kept": n_kept,
        "coverage": n_kept / len(y) if len(y) else None,
        "accuracy_all": float(right.mean()) if len(y) else None,
        "accuracy_kept": float(right[keep].mean()) if n_kept else None,
    }


def auroc(in_domain: Any, held_out: Any) -> float | None:
    """How well the distance tells held-out-source items (positives) from in-domain ones: ROC AUC, or None."""
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(in_domain, dtype=float), np.asarray(held_out, dtype=float)
    if not len(a) or not len(b):
        return None
    return float(roc_auc_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b]))
