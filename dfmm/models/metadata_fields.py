"""How checkpoint metadata is read and refused: the one-line ``CheckpointError`` messages (``_Where`` names the
file, the checkpoint kind and the key), the readers of typed values (integers in a range, booleans, dropout, the
decision rule...) and ``_Section``, the ``from_meta`` / ``check_present`` / ``describes_model`` machinery every
section type of :mod:`dfmm.models.metadata` shares."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from dfmm.errors import CheckpointError


# ------------------------------------------------------------------------------------------------ messages
def _show(value: Any, limit: int = 60) -> str:
    """repr of a value, cut at a word boundary with an ellipsis when long."""
    text = " ".join(repr(value).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(",:") + "…"


@dataclass(frozen=True)
class _Where:
    """Whose metadata is read: a file (None when the caller adds it), the checkpoint kind and a section prefix."""

    path: str | Path | None
    kind: str
    section: str = ""  # "visual." in an ensemble

    def _head(self) -> str:
        return f"{self.path}: " if self.path is not None else ""

    def bad(self, key: str, value: Any, expected: str) -> NoReturn:
        raise CheckpointError(
            f"{self._head()}{self.kind} metadata {self.section}{key} = {_show(value)}; expected {expected}"
        )

    def fail(self, what: str) -> NoReturn:
        raise CheckpointError(f"{self._head()}{self.kind} {what}")

    def missing(self, key: str, needs: tuple[str, ...]) -> NoReturn:
        names = ", ".join(self.section + k for k in needs)
        self.fail(f"metadata has no {self.section}{key} (a {self.kind.split('_')[0]} branch needs {names})")

    def sub(self, section: str) -> _Where:
        return _Where(self.path, self.kind, self.section + section)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(w: _Where, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        w.bad(key, value, f"an integer in {lo}..{hi}")
    return value


def _bool(w: _Where, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        w.bad(key, value, "true or false")
    return value


def _dropout(w: _Where, value: Any) -> float:
    if not (_is_number(value) and 0.0 <= value < 1.0):
        w.bad("dropout", value, "a number in [0, 1)")
    return float(value)


def _object(w: _Where, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        w.bad(key, value, "an object")
    return value


def _rule(w: _Where, meta: Mapping[str, Any]) -> dict[str, float]:
    """The decision rule's keys (optional: 0.5 and 1.0 when training chose none)."""
    out = {}
    if "threshold" in meta:
        t = meta["threshold"]
        if not (_is_number(t) and 0.0 < t < 1.0):
            w.bad("threshold", t, "a number between 0 and 1 (exclusive)")
        out["threshold"] = float(t)
    if "temperature" in meta:
        t = meta["temperature"]
        if not (_is_number(t) and t > 0.0):
            w.bad("temperature", t, "a finite number > 0")
        out["temperature"] = float(t)
    return out


def _common(w: _Where, meta: Mapping[str, Any]) -> None:
    """Keys every section may carry that ``load_model`` hands on: the config and its digest."""
    if "config" in meta:
        _object(w, "config", meta["config"])
    if "config_digest" in meta and not isinstance(meta["config_digest"], str):
        w.bad("config_digest", meta["config_digest"], "a string")


def _meta_dict(w: _Where, meta: Any) -> Mapping[str, Any]:
    if not isinstance(meta, Mapping):
        if w.section:
            w.fail(f"metadata '{w.section.rstrip('.')}' is not an object")
        w.fail(f"checkpoint metadata is a JSON {type(meta).__name__}, expected an object")
    return meta


# ------------------------------------------------------------------------------------------------ sections
class _Section:
    """``from_meta``, ``check_present`` and ``describes_model`` of a section type: ``_values`` reads the keys."""

    KIND: ClassVar[str]
    REQUIRED: ClassVar[tuple[str, ...]]

    @classmethod
    def _values(cls, meta: Mapping[str, Any], w: _Where) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_meta(cls, meta: Any, path: str | Path | None = None, *, section: str = "", kind: str = "") -> Any:
        """The typed metadata of ``meta`` (a checkpoint's JSON metadata; an instance is returned as is): every key it
        holds is checked, then the required ones must be there; the others take the declared defaults."""
        if isinstance(meta, cls):
            return meta
        w = _Where(path, kind or cls.KIND, section)
        meta = _meta_dict(w, meta)
        values = cls._values(meta, w)
        for key in cls.REQUIRED:
            if key not in meta:
                w.missing(key, cls.REQUIRED)
        return cls(**values)

    @classmethod
    def check_present(cls, meta: Any, path: str | Path | None = None, *, section: str = "", kind: str = "") -> None:
        """Check the keys ``meta`` holds (types, ranges), requiring none."""
        w = _Where(path, kind or cls.KIND, section)
        cls._values(_meta_dict(w, meta), w)

    @classmethod
    def describes_model(cls, meta: Any) -> bool:
        """Whether ``meta`` names any key of the model's description (then it must name them all)."""
        return isinstance(meta, Mapping) and any(k in meta for k in cls.REQUIRED)
