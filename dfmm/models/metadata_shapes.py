"""Whether a checkpoint's tensors fit the architecture its metadata names: the architecture is built on PyTorch's
``meta`` device (shapes only, no memory) and ``_compare`` refuses a state whose tensor names or shapes differ, in
one line that counts the weights expected and held and names the first differences."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from dfmm.models.metadata_fields import _show, _Where


# -------------------------------------------------------------------------------------------- state checks
def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _compare(
    w: _Where,
    what: str,
    expected: Mapping[str, tuple[int, ...]],
    state: Mapping[str, torch.Tensor],
    tolerated: tuple[str, ...] = (),
) -> None:
    """Refuse a state whose tensors are not the architecture's, in one line: counts, then the first differences."""

    def optional(key: str) -> bool:
        return any(key.endswith(t) for t in tolerated)

    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected and not optional(k)]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or shapes):
        return
    want = sum(math.prod(s) for s in expected.values())
    have = sum(int(v.numel()) for v in state.values())
    parts = []
    if missing:
        parts.append(f"missing: {len(missing)} (e.g. '{missing[0]}')")
    if unexpected:
        parts.append(f"unexpected: {len(unexpected)} (e.g. '{unexpected[0]}')")
    if shapes:
        k = shapes[0]
        parts.append(f"other shape: {len(shapes)} (e.g. '{k}' {list(state[k].shape)}, expected {list(expected[k])})")
    which = f"checkpoint state {w.section}*" if w.section else "checkpoint state"
    w.fail(
        f"{which} does not fit {what}: it expects {_millions(want)} weights in {len(expected)} tensors, "
        f"the checkpoint holds {_millions(have)} in {len(state)}; " + ", ".join(parts)
    )


class _BuildError(Exception):
    """The architecture the metadata names could not be built, even shapes-only (the reason)."""


def _built(w: _Where, what: str, shapes: Callable[..., Any], *args: Any) -> Any:
    try:
        return shapes(*args)
    except _BuildError as e:
        w.fail(f"metadata {w.section}names {what}, which does not build ({_show(str(e), 100)})")


@functools.lru_cache(maxsize=8)
def _visual_shapes(timm_name: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """(tensor shapes, feature width) of a visual branch on timm ``timm_name``, built on the meta device."""
    import timm

    from dfmm.models.visual import VisualBranch

    try:
        with torch.device("meta"):
            model = VisualBranch(timm.create_model(timm_name, pretrained=False, num_classes=0, global_pool="avg"))
    except Exception as e:  # noqa: BLE001 - a timm that lacks an architecture of the registry
        raise _BuildError(" ".join(str(e).split())) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}, model.feature_dim


@functools.lru_cache(maxsize=8)
def _text_shapes(hf_json: str, hidden: int) -> dict[str, tuple[int, ...]]:
    from transformers import AutoModel

    from dfmm.models.text import TextBranch

    try:
        with torch.device("meta"):
            model = TextBranch(AutoModel.from_config(_hf_config_object(hf_json)), hidden)
    except Exception as e:  # noqa: BLE001 - a config field transformers rejects only when it builds the model
        raise _BuildError(" ".join(str(e).split())) from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _hf_config_object(hf_json: str) -> Any:
    from transformers import AutoConfig

    hf = json.loads(hf_json)
    model_type = hf.pop("model_type")
    return AutoConfig.for_model(model_type, **{k: v for k, v in hf.items() if not k.startswith("_")})


def _fusion_shapes(visual_dim: int, text_dim: int, attention: bool) -> dict[str, tuple[int, ...]]:
    from dfmm.models.fusion import FusionEnsemble

    with torch.device("meta"):
        model = FusionEnsemble(visual_dim, text_dim, attention)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
