"""A checkpoint as ONNX graphs for CPU runtimes (OpenVINO, ONNX Runtime): what ``dfmm export`` writes.

An export folder holds one graph per branch and, where the checkpoint stores an out-of-distribution reference
(``dfmm.models.ood``), one graph of that branch's frozen backbone, so that every number a ``classify_*`` result
carries comes from the runtime:

- ``visual.onnx``: ``images`` (N, 3, S, S) -> ``logits`` (N,), ``features`` (N, D). With the recipe's test-time
  mirror the graph scores the images and their mirror images in one batch and averages the two logits (as
  ``VisualBranch.scored``); the features are the unmirrored ones the fusion reads.
- ``text.onnx``: ``input_ids``, ``attention_mask`` (N, L), batch and length dynamic -> ``logits``, ``features``.
- ``visual_frozen.onnx`` / ``text_frozen.onnx``: the same inputs -> ``features`` of the backbone before fine-tuning.
- ``mtcnn_pnet.onnx``, ``mtcnn_rnet.onnx``, ``mtcnn_onet.onnx``: the face detector's three stages (with a visual
  branch), so that face crops are found by the runtime too.
- ``tensors.safetensors``: the fusion head's weights and the OOD reference tensors (plain tensors, no code); for
  an ensemble whose text branch is the TF-IDF n-gram model (notebook 07's shipped ensemble) that model's tensors
  too: it has no network (hashing and one sparse dot product in NumPy), so every runtime serves it as PyTorch does
  (the manifest's ``numpy_branches``), and its out-of-distribution check builds the frozen MiniLM encoder in
  PyTorch, as under ``--runtime torch``.
- ``manifest.json``: format and version, opset, the checkpoint's metadata (tokenizer, decision rules, crop
  geometry...), each graph's file, SHA-256 and input shape, and each branch's decision rule.

The graphs are traced by ``torch.onnx.export``'s TorchScript exporter (``dynamo=False``): it needs no package
beyond torch, and its graphs of these branches gave the same probabilities as eager PyTorch within 6e-6 on the
compact test splits (``benchmarks/serving.py``; ``tests/test_runtimes.py`` holds them to 1e-4).
The small fusion head (two weights, or a 64-wide attention) stays a PyTorch module: it costs microseconds.
Loading, checking and running an export folder is ``dfmm.serving.runtimes``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dfmm.errors import CheckpointError, DataError, DfmmError
from dfmm.files import file_digest as sha256
from dfmm.models.branches import frozen_branch, text_from_meta, visual_from_meta
from dfmm.models.checkpoints import load_checkpoint_parts, part_state
from dfmm.models.metadata import NgramMeta, text_section_type
from dfmm.models.scoring import DecisionRule

FORMAT = "dfmm-export"
VERSION = 1
OPSET = 17
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"
VISUAL_INPUTS = ("images",)
TEXT_INPUTS = ("input_ids", "attention_mask")


class _Scored(nn.Module):
    """A branch's ``scored`` (logits, features) as a traceable module; the visual mirror folded into one batch."""

    def __init__(self, branch: nn.Module, mirror: bool | None) -> None:
        super().__init__()
        self.branch, self.mirror = branch, mirror

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mirror is None:  # text
            return self.branch.scored(*inputs)
        (images,) = inputs
        if not self.mirror:
            return self.branch.scored(images)
        n = images.shape[0]
        features = self.branch.features(torch.cat([images, torch.flip(images, dims=[3])]))
        logits = self.branch.logits(features)
        return 0.5 * (logits[:n] + logits[n:]), features[:n]


class _Features(nn.Module):
    """A frozen branch's features alone (the OOD reference's inputs)."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.branch.features(*inputs)


def _trace(
    module: nn.Module, example: tuple[torch.Tensor, ...], names: tuple[str, ...], outputs: list[str], path: Path
):
    dynamic = {n: {0: "batch"} | ({1: "tokens"} if n in TEXT_INPUTS else {}) for n in names}
    dynamic |= {o: {0: "batch"} for o in outputs}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(
            module.eval(),
            example,
            str(path),
            input_names=list(names),
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _examples(branch: str, meta: dict[str, Any], tokenizer: Any) -> tuple[torch.Tensor, ...]:
    if branch == "visual":
        size = int(meta["image_size"])
        return (torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)),)
    enc = tokenizer(["an example text to trace", "a shorter one"], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _graph_entry(path: Path, branch: str, meta: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    if branch == "visual":
        size = int(meta["image_size"])
        inputs = {"images": ["batch", 3, size, size]}
    else:
        inputs = {"input_ids": ["batch", "tokens"], "attention_mask": ["batch", "tokens"]}
    return {"file": path.name, "sha256": sha256(path), "inputs": inputs, "outputs": outputs}


MTCNN_INPUTS = {  # the MTCNN stage -> (example input shape, its dynamic axes)
    "pnet": ((1, 3, 24, 24), {0: "batch", 2: "height", 3: "width"}),
    "rnet": ((2, 3, 24, 24), {0: "batch"}),
    "onet": ((2, 3, 48, 48), {0: "batch"}),
}


def _export_face_detector(folder: Path) -> dict[str, Any]:
    """MTCNN's three stages (facenet-pytorch's weights) as graphs ``mtcnn_<stage>.onnx``, so that a runtime model
    finds faces with the runtime too; nothing when facenet-pytorch is not installed (faces are then not cropped
    under any runtime: ``FaceDetector`` says how to install it)."""
    try:
        from facenet_pytorch import MTCNN
    except ImportError:
        return {}
    mtcnn = MTCNN()
    out = {}
    for stage, (shape, axes) in MTCNN_INPUTS.items():
        net = getattr(mtcnn, stage).eval()
        example = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            outputs = [f"out{i}" for i in range(len(net(example)))]
        path = folder / f"mtcnn_{stage}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (example,),
                str(path),
                input_names=["images"],
                output_names=outputs,
                dynamic_axes={"images": axes} | {o: {0: "batch"} for o in outputs},
                opset_version=OPSET,
                dynamo=False,
            )
        out[f"mtcnn_{stage}"] = {
            "file": path.name,
            "sha256": sha256(path),
            "inputs": {"images": list(shape)},
            "outputs": outputs,
        }
    return out


def _is_export(folder: Path) -> bool:
    """Whether ``folder`` holds a manifest dfmm export wrote (only such a folder is ever replaced)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def export_model(checkpoint: str | Path, out: str | Path, *, frozen: bool = True) -> dict[str, Any]:
    """Write ``checkpoint`` (any dfmm checkpoint kind) as an export folder ``out`` and return its manifest.

    ``out`` must be missing, empty or an earlier export (replaced); it is written beside as a temporary folder and
    renamed into place, so a failed export leaves nothing half-written. ``frozen``: also export each OOD
    reference's frozen backbone (its pretrained weights must be available here; where they are not, the manifest
    says why and a runtime model builds that backbone with PyTorch when it judges an input).
    """
    out = Path(out).resolve()  # "." has no name to write a temporary folder beside
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_export(out))):
        raise DataError(f"--out {out}: exists and is not an earlier dfmm export; choose a new folder")
    kind, state, meta, refs = load_checkpoint_parts(checkpoint)
    if kind == "text_ngrams":
        raise CheckpointError(
            f"{checkpoint}: the n-gram text model has no network to export (its score is hashing and one sparse dot "
            "product in NumPy); serve it as it is, with --runtime torch"
        )
    ngram_text = kind == "multimodal_ensemble" and text_section_type(meta["text"]) is NgramMeta
    sections = {"visual": meta, "text": meta} if kind != "multimodal_ensemble" else meta
    branches = {"visual_branch": ["visual"], "text_branch": ["text"]}.get(kind, ["visual", "text"])
    prefixed = kind == "multimodal_ensemble"
    tmp = out.with_name(f".{out.name}.tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        graphs: dict[str, Any] = {}
        rules: dict[str, Any] = {}
        frozen_missing: dict[str, str] = {}
        tensors: dict[str, torch.Tensor] = {}
        numpy_branches: dict[str, Any] = {}
        for branch in branches:
            bmeta = sections[branch]
            if branch == "text" and ngram_text:  # no graph: its tensors, rule and reference travel as they are
                numpy_branches["text"] = {"model": "ngrams"}
                tensors |= {k: v for k, v in state.items() if k.startswith("text.")}
                rules["text"] = DecisionRule.from_meta(bmeta).to_dict()
                if "text" in refs:
                    numpy_branches["text"]["ood"], ref_tensors = refs["text"].to_checkpoint("text")
                    tensors |= ref_tensors
                continue
            part = part_state(state, branch) if prefixed else state
            if branch == "visual":
                model, tokenizer = visual_from_meta(bmeta, part), None
                mirror: bool | None = bool(bmeta.get("tta", False))
                names = VISUAL_INPUTS
            else:
                model, tokenizer = text_from_meta(bmeta, part)
                if hasattr(model.encoder, "set_attn_implementation"):  # ONNX Runtime fuses eager attention into
                    model.encoder.set_attn_implementation("eager")  # one op; OpenVINO ran it 34 vs 30 texts/s (once)
                mirror, names = None, TEXT_INPUTS
            example = _examples(branch, bmeta, tokenizer)
            path = tmp / f"{branch}.onnx"
            _trace(_Scored(model, mirror), example, names, ["logits", "features"], path)
            graphs[branch] = _graph_entry(path, branch, bmeta, ["logits", "features"]) | {"mirror_folded": bool(mirror)}
            rules[branch] = DecisionRule.from_meta(bmeta).to_dict()
            if branch in refs:
                section, ref_tensors = refs[branch].to_checkpoint(branch)
                graphs[branch]["ood"] = section
                tensors |= ref_tensors
                if frozen:
                    try:
                        net = frozen_branch(branch, refs[branch].backbone, bmeta.get("timm_name", ""))[0]
                    except (DfmmError, ImportError, OSError) as e:
                        frozen_missing[branch] = (
                            f"the pretrained backbone {refs[branch].backbone} is not available ({e})"
                        )
                        continue
                    path = tmp / f"{branch}_frozen.onnx"
                    _trace(_Features(net), example, names, ["features"], path)
                    graphs[f"{branch}_frozen"] = _graph_entry(path, branch, bmeta, ["features"])
        if "visual" in branches:
            graphs |= _export_face_detector(tmp)
        if kind == "multimodal_ensemble":
            tensors |= {k: v for k, v in state.items() if k.startswith("fusion.")}
        if tensors:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / TENSORS))
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "opset": OPSET,
            "kind": kind,
            "checkpoint": {"file": str(checkpoint), "sha256": sha256(checkpoint)},
            "exported_with": {"torch": torch.__version__},
            "graphs": graphs,
            "numpy_branches": numpy_branches,
            "rules": rules,
            "frozen_missing": frozen_missing,
            "tensors": {"file": TENSORS, "sha256": sha256(tmp / TENSORS)} if tensors else None,
            "meta": meta,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
