"""Running an export folder (``dfmm.models.export``) under OpenVINO or ONNX Runtime.

``load_model(folder, runtime="openvino"|"onnxruntime")`` reads the folder here: the manifest (format, version,
opset, metadata, a decision rule for each branch) and every file's SHA-256 are checked before any graph is
compiled, then each graph's opset and input size as it is read; each refusal is one line naming the file and what
is wrong. The branches it
returns answer ``scored`` / ``features`` like the PyTorch branches (same tensors in, same tensors out), so every
``classify_*`` path, ``dfmm score`` and ``dfmm evaluate`` run unchanged on them. Gradients are PyTorch's alone:
GradCAM and token attributions refuse another runtime in one line.

Both runtimes are told to compute in fp32 (OpenVINO picks bf16 by default on CPUs that support it, which the
1e-4 agreement with PyTorch does not allow for) and to serve one request at a time with all cores (``LATENCY``); ONNX Runtime's threads
do not spin between calls, so the decoding worker of ``dfmm score`` gets the cores while the model waits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dfmm.choices import RUNTIMES
from dfmm.errors import CheckpointError, DataError
from dfmm.files import file_digest as sha256
from dfmm.models.export import FORMAT, MANIFEST, OPSET, VERSION
from dfmm.models.scoring import DecisionRule

GRAPHS = ("visual", "text", "visual_frozen", "text_frozen", "mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")
INSTALL = {  # the exact pins of requirements.txt (make setup installs them; pip install 'dfmm[serving]' elsewhere)
    "openvino": "pip install openvino==2026.4.1",
    "onnxruntime": "pip install onnxruntime==1.31.1",
}


def check_runtime(runtime: Any) -> str:
    """``runtime`` is one of ``RUNTIMES`` and, if not torch, installed; else one line with the install command."""
    if not isinstance(runtime, str) or runtime not in RUNTIMES:
        raise DataError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if runtime != "torch":
        try:
            __import__(runtime)
        except ImportError:
            raise DataError(f"runtime {runtime} is not installed: {INSTALL[runtime]}") from None
    return runtime


class Graph:
    """One compiled ONNX graph: ``graph(**arrays)`` -> its outputs as numpy arrays, in the manifest's order."""

    def __init__(self, path: Path, runtime: str, outputs: list[str]) -> None:
        self.path, self.runtime, self.outputs = path, runtime, outputs
        if runtime == "openvino":
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
            self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            self.inputs = {p.get_any_name(): p.get_partial_shape() for p in self._compiled.inputs}
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.inputs = {i.name: i.shape for i in self._session.get_inputs()}

    def input_dims(self, name: str) -> list[Any]:
        """The graph's dimensions of input ``name`` (ints, or None where dynamic)."""
        shape = self.inputs[name]
        if self.runtime == "openvino":
            return [d.get_length() if d.is_static else None for d in shape]
        return [d if isinstance(d, int) else None for d in shape]

    def __call__(self, **arrays: np.ndarray) -> list[np.ndarray]:
        if self.runtime == "openvino":
            result = self._compiled(arrays)
            return [np.asarray(result[self._compiled.output(name)]) for name in self.outputs]
        return self._session.run(self.outputs, arrays)


def _numpy(t: torch.Tensor, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


@dataclass
class ExportedBranch:
    """A branch (or a frozen backbone) served by a runtime, with the PyTorch branches' ``scored`` and ``features``.

    ``scored`` ignores ``tta``: an exported visual graph has its recipe's mirror folded in (``mirror_folded``).
    """

    branch: str  # visual | text
    graph: Graph
    mirror_folded: bool = False
    device: torch.device = torch.device("cpu")

    def _inputs(self, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        if self.branch == "visual":
            (images,) = args or (kwargs["images"],)
            return {"images": _numpy(images, np.float32)}
        ids, mask = args or (kwargs["input_ids"], kwargs["attention_mask"])
        return {"input_ids": _numpy(ids, np.int64), "attention_mask": _numpy(mask, np.int64)}

    def scored(
        self, *args: torch.Tensor, tta: bool = False, **kwargs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features); a frozen backbone's graph has no head: its logits are zeros (never read)."""
        outputs = self.graph(**self._inputs(args, kwargs))
        features = torch.from_numpy(outputs[-1])
        logits = torch.from_numpy(outputs[0].reshape(-1)) if len(outputs) == 2 else torch.zeros(len(features))
        return logits, features

    def features(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.graph(**self._inputs(args, kwargs))[-1])

    def eval(self) -> ExportedBranch:
        return self


class GraphNet(torch.nn.Module):
    """An MTCNN stage run by a runtime, called as facenet-pytorch calls its nets (tensor in, tuple of tensors out);
    one placeholder parameter, because facenet-pytorch reads the input dtype from the net's parameters."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.placeholder = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(o) for o in self.graph(images=_numpy(images, np.float32)))


@dataclass
class Exported:
    """What an export folder holds, checked: the manifest's kind and metadata, the branches, frozen backbones,
    fusion tensors and OOD reference tensors."""

    kind: str
    meta: dict[str, Any]
    branches: dict[str, Any]  # ExportedBranch, or the n-gram text model (NumPy under every runtime)
    frozen: dict[str, ExportedBranch]
    tensors: dict[str, torch.Tensor]
    ood_meta: dict[str, Any]
    manifest: dict[str, Any]
    face_nets: dict[str, GraphNet]  # MTCNN's stages (FaceDetector.use_nets); {} for exports without them


def _fail(folder: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{folder}: {what}")


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The export folder's manifest, its format, version and opset checked (one line each)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise _fail(
            folder, f"no {MANIFEST}: not a dfmm export folder (write one with dfmm export --model CKPT --out DIR)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(folder, f"{MANIFEST} is not readable JSON ({str(e)[:100]})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _fail(folder, f"{MANIFEST} is not a dfmm export manifest (no 'format': '{FORMAT}')")
    if manifest.get("version") != VERSION:
        raise _fail(
            folder, f"{MANIFEST}: export version {manifest.get('version')!r}, this dfmm reads version {VERSION}"
        )
    if manifest.get("opset") != OPSET:
        raise _fail(folder, f"{MANIFEST}: opset {manifest.get('opset')!r}, this dfmm exports and reads opset {OPSET}")
    for key, kind in (("graphs", dict), ("rules", dict), ("meta", dict), ("kind", str)):
        if not isinstance(manifest.get(key), kind):
            raise _fail(folder, f"{MANIFEST}: '{key}' missing or not a {kind.__name__}")
    return manifest


def _checked_file(folder: Path, entry: Any, name: str) -> Path:
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("file"), str)
        or not isinstance(entry.get("sha256"), str)
    ):
        raise _fail(folder, f"{MANIFEST}: {name} has no file and sha256")
    path = folder / entry["file"]
    if path.parent != folder or not path.is_file():
        raise _fail(folder, f"{name}: file {entry['file']} is missing")
    if sha256(path) != entry["sha256"]:
        raise _fail(folder, f"{entry['file']} does not match its SHA-256 in {MANIFEST} (changed after export)")
    return path


def _compiled(folder: Path, path: Path, runtime: str, entry: dict[str, Any]) -> Graph:
    """The graph compiled for ``runtime``, or one line saying that the runtime cannot read it."""
    outputs = entry.get("outputs")
    if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
        raise _fail(folder, f"{MANIFEST}: the {path.name} entry lists no outputs")
    try:
        return Graph(path, runtime, outputs)
    except Exception as e:  # noqa: BLE001 - the runtimes raise their own types for unreadable graphs
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:150]
        raise _fail(folder, f"{path.name}: {runtime} cannot read this graph ({first})") from None


def _check_opset(folder: Path, path: Path) -> None:
    try:
        import onnx
    except ImportError:  # the runtimes read the graph anyway; the manifest's opset was checked
        return
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - protobuf's DecodeError and kin
        raise _fail(folder, f"{path.name}: not an ONNX graph (it does not parse)") from None
    from onnx.external_data_helper import uses_external_data

    if any(uses_external_data(t) for t in model.graph.initializer):  # weights in files the manifest does not check
        raise _fail(folder, f"{path.name}: keeps weights in external files; dfmm exports hold them in the graph")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset != OPSET:
        raise _fail(folder, f"{path.name}: graph opset {opset}, the manifest and this dfmm use {OPSET}")


def _check_inputs(folder: Path, graph: Graph, name: str, meta: dict[str, Any]) -> None:
    if name.startswith("visual"):
        size = meta.get("image_size")
        dims = graph.input_dims("images") if "images" in graph.inputs else None
        if dims is None or len(dims) != 4 or dims[1:] != [3, size, size]:
            raise _fail(
                folder,
                f"{graph.path.name}: input images {dims} does not match the metadata's image_size {size} "
                "(expected [batch, 3, size, size])",
            )
    elif set(graph.inputs) != {"input_ids", "attention_mask"}:
        raise _fail(folder, f"{graph.path.name}: inputs {sorted(graph.inputs)}, expected input_ids and attention_mask")


def _numpy_branches(folder: Path, manifest: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """The branches served without a graph (``dfmm.models.export``: the n-gram text model), checked."""
    from dfmm.models.metadata import NgramMeta, text_section_type

    found = manifest.get("numpy_branches") or {}
    if not isinstance(found, dict) or set(found) - {"text"}:
        raise _fail(folder, f"{MANIFEST}: numpy_branches {found!r}: only the n-gram text branch runs without a graph")
    if "text" in found:
        if not isinstance(found["text"], dict) or found["text"].get("model") != "ngrams":
            raise _fail(folder, f"{MANIFEST}: numpy_branches.text is not the n-gram model")
        if manifest["kind"] != "multimodal_ensemble" or text_section_type(sections["text"]) is not NgramMeta:
            raise _fail(folder, f"{MANIFEST}: numpy_branches.text, but the metadata's text branch is not n-grams")
        if "text" in manifest["graphs"]:
            raise _fail(folder, f"{MANIFEST}: the text branch is both a graph and the n-gram model")
    return found


def load_export(folder: str | Path, runtime: str) -> Exported:
    """Every graph of the folder compiled for ``runtime``, after checking the whole folder (see the docstring)."""
    from dfmm.models.checkpoints import validate_meta

    check_runtime(runtime)
    folder = Path(folder)
    manifest = read_manifest(folder)
    kind, meta, graphs = manifest["kind"], manifest["meta"], manifest["graphs"]
    validate_meta(folder / MANIFEST, kind, meta)
    sections = meta if kind == "multimodal_ensemble" else {"visual": meta, "text": meta}
    wanted = {"visual_branch": ["visual"], "text_branch": ["text"]}.get(kind, ["visual", "text"])
    numpy_branches = _numpy_branches(folder, manifest, sections)
    for branch in wanted:
        if branch not in graphs and branch not in numpy_branches:
            raise _fail(folder, f"{MANIFEST}: a {kind} export has no {branch} graph")
        rule = manifest["rules"].get(branch)
        if not isinstance(rule, dict) or {"threshold", "temperature"} - set(rule):
            raise _fail(folder, f"{MANIFEST}: rules.{branch} is missing (the decision threshold and temperature)")
        try:
            given = DecisionRule(float(rule["threshold"]), float(rule["temperature"]))
        except (TypeError, ValueError):
            raise _fail(folder, f"{MANIFEST}: rules.{branch} {rule} is not two numbers") from None
        if given != DecisionRule.from_meta(sections[branch]):
            raise _fail(folder, f"{MANIFEST}: rules.{branch} {rule} differs from the metadata's decision rule")
    unknown = sorted(set(graphs) - set(GRAPHS))
    if unknown:
        raise _fail(folder, f"{MANIFEST}: unknown graph {unknown[0]!r} (expected some of {', '.join(GRAPHS)})")
    paths = {name: _checked_file(folder, entry, f"graphs.{name}") for name, entry in graphs.items()}
    tensors: dict[str, torch.Tensor] = {}
    if manifest.get("tensors") is not None:
        from safetensors.torch import load_file

        path = _checked_file(folder, manifest["tensors"], "tensors")
        try:
            tensors = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors' own error types
            raise _fail(
                folder, f"{path.name}: not a readable safetensors file ({str(e).splitlines()[0][:100]})"
            ) from None
    branches: dict[str, Any] = {}
    frozen, face_nets = {}, {}
    if "text" in numpy_branches:
        from dfmm.models.branches import ngrams_from_meta
        from dfmm.models.checkpoints import part_state

        try:
            branches["text"] = ngrams_from_meta(sections["text"], part_state(tensors, "text"))
        except (CheckpointError, KeyError, RuntimeError, ValueError) as e:
            why = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise _fail(folder, f"the n-gram text tensors do not match the metadata ({why})") from None
    for name, path in paths.items():
        _check_opset(folder, path)
        entry = graphs[name]
        graph = _compiled(folder, path, runtime, entry)
        if name.startswith("mtcnn_"):
            face_nets[name.removeprefix("mtcnn_")] = GraphNet(graph)
            continue
        branch = name.split("_")[0]
        _check_inputs(folder, graph, name, sections.get(branch, {}))
        exported = ExportedBranch(branch, graph, bool(entry.get("mirror_folded", False)))
        tta = bool(sections.get(branch, {}).get("tta", False))
        if name == "visual" and exported.mirror_folded != tta:
            raise _fail(folder, f"{path.name}: mirror_folded={exported.mirror_folded} but the metadata's tta is {tta}")
        (frozen if name.endswith("_frozen") else branches)[branch] = exported
    entries = {b: graphs.get(b) or numpy_branches.get(b) or {} for b in wanted}
    ood_meta = {b: entry["ood"] for b, entry in entries.items() if isinstance(entry.get("ood"), dict)}
    if face_nets and set(face_nets) != {"pnet", "rnet", "onet"}:
        raise _fail(folder, f"{MANIFEST}: MTCNN graphs {sorted(face_nets)}, expected pnet, rnet and onet")
    return Exported(kind, meta, branches, frozen, tensors, ood_meta, manifest, face_nets)
