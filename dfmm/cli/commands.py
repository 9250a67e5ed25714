"""The ``dfmm`` subcommands behind the parser: ``classify``, ``train``, ``evaluate``, ``score`` and ``export``, each
taking the parsed arguments and returning what ``main`` prints as JSON (heavy imports stay inside them, so a bad
argument costs well under a second)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dfmm.cli.inputs import _expand, _gradcam_folder, _multimodal_inputs, _options_for, _text_inputs, _write_overlay
from dfmm.errors import DfmmError

_CLASSIFY_OPTIONS = {
    "image": {"face_crop", "gradcam"},
    "text": {"text_inputs"},
    "video": {"num_frames", "aggregation", "face_crop", "all_faces"},
    "multimodal": {"face_crop", "image", "text"},
}


def cmd_classify(a: argparse.Namespace) -> Any:
    from dfmm.data.images import IMAGE_EXTENSIONS
    from dfmm.data.video import VIDEO_EXTENSIONS

    _options_for(a, f"classify {a.modality}", _CLASSIFY_OPTIONS[a.modality])
    # every input is read or listed before torch is imported and the model loads (10-20 s): a typo costs nothing
    if a.modality == "multimodal":
        image, text = _multimodal_inputs(a)
        from dfmm.serving.inference import classify_multimodal, load_model

        model, _ = load_model(a.model, a.runtime)
        return classify_multimodal(model, image_path_or_pil=image, text=text, face_crop=a.face_crop)
    if not a.inputs:
        raise DfmmError(f"classify {a.modality}: give at least one input")
    if a.gradcam and a.runtime != "torch":
        raise DfmmError(f"--gradcam needs gradients, which only PyTorch computes: use --runtime torch, not {a.runtime}")
    gradcam_dir = _gradcam_folder(a.gradcam) if a.gradcam else None
    if a.modality == "text":
        texts = _text_inputs(a.inputs, a.text_inputs)
    else:
        files = _expand(a.inputs, IMAGE_EXTENSIONS if a.modality == "image" else VIDEO_EXTENSIONS)
    from dfmm.serving.inference import classify_image, classify_text, classify_video, load_model

    model, _ = load_model(a.model, a.runtime)
    results = []
    if a.modality == "text":
        for name, kind, text in texts:
            results.append({"input": name, "input_kind": kind, **classify_text(model, text)})
    elif a.modality == "image":
        written: set[Path] = set()
        for f in files:
            r = classify_image(model, f, return_gradcam=gradcam_dir is not None, face_crop=a.face_crop)
            if gradcam_dir is not None:
                r["gradcam_png"] = str(_write_overlay(gradcam_dir, f.stem, r["gradcam"]["overlay"], written))
            results.append({"input": str(f), **r})
    else:
        for f in files:
            r = classify_video(
                model,
                f,
                num_frames=a.num_frames,
                aggregation=a.aggregation,
                face_crop=a.face_crop != "never",
                all_faces=a.all_faces,
            )
            results.append({"input": str(f), **r})
    return results[0] if len(results) == 1 else results


def cmd_train(a: argparse.Namespace) -> dict[str, Any] | None:
    """One branch, one recipe, through the same code as the notebooks; under ``accelerate launch`` each process
    trains on its shard and only the main process saves and prints."""
    from dfmm.config import load_config

    cfg = load_config(a.params, a.overrides)  # before torch is imported: a bad value costs well under a second
    bc = getattr(cfg, a.branch)
    recipe = a.recipe or bc.report_recipe
    if recipe not in bc.recipes:
        raise DfmmError(f"--recipe {recipe}: not among {a.branch}.recipes {sorted(bc.recipes)}")
    seed = cfg.study.seed if a.seed is None else a.seed
    from dfmm.data import image_splits, text_splits
    from dfmm.files import TRAINING_STATES
    from dfmm.training.experiments import train_text, train_visual, training_state_path

    states = cfg.run_dir / TRAINING_STATES
    if not a.resume:  # a fresh start: never continue another attempt's state unasked
        training_state_path(states, a.branch, recipe, seed).unlink(missing_ok=True)
    train = train_visual if a.branch == "visual" else train_text
    splits = image_splits(cfg) if a.branch == "visual" else text_splits(cfg)
    run = train(cfg, recipe, splits, seed=seed, states=states)
    from accelerate import PartialState

    state = PartialState()
    if not state.is_main_process:
        return None
    return {**run.summary(), "processes": state.num_processes}


_SOURCE_OPTIONS = {  # evaluate / score: which scoped options each kind of source uses
    "evaluate": {
        "images": {"batch_size"},
        "texts": {"batch_size"},
        "videos": {"num_frames", "aggregation", "face_crop"},
    },
    "score": {
        "images": {"batch_size", "face_crop"},
        "texts": set(),
        "videos": {"num_frames", "aggregation", "face_crop"},
    },
}


def _source(a: argparse.Namespace) -> tuple[str, str]:
    kind = next(k for k in ("images", "videos", "texts") if getattr(a, k) is not None)
    if not getattr(a, kind).strip():
        raise DfmmError(f"--{kind}: empty path")
    return kind, getattr(a, kind)


def cmd_evaluate(a: argparse.Namespace) -> dict[str, Any]:
    kind, source = _source(a)
    _options_for(a, f"evaluate --{kind}", _SOURCE_OPTIONS["evaluate"][kind], {"batch_size": 32})
    # the data is read and checked before torch is imported and the model loads
    if kind == "images":
        from dfmm.data.images import load_images

        data: Any = load_images(source)
    elif kind == "texts":
        from dfmm.data.text import load_texts

        data = load_texts(source)
    else:
        from dfmm.data.video import labelled_clips

        data = labelled_clips(source)
    from dfmm.serving.evaluate import evaluate_images, evaluate_texts, evaluate_videos
    from dfmm.serving.inference import load_model

    if kind == "images":
        return evaluate_images(load_model(a.model, a.runtime)[0], source, a.batch_size, images=data)
    if kind == "texts":
        return evaluate_texts(load_model(a.model, a.runtime)[0], source, a.batch_size, texts=data)
    clips = data
    return evaluate_videos(
        load_model(a.model, a.runtime)[0],
        source,
        a.num_frames,
        a.aggregation,
        face_crop=a.face_crop != "never",
        clips=clips,
    )


def cmd_score(a: argparse.Namespace) -> dict[str, Any]:
    from dfmm.serving.score_files import check_can_score, list_items, read_rows, score_to_csv

    kind, source = _source(a)
    _options_for(a, f"score --{kind}", _SOURCE_OPTIONS["score"][kind], {"batch_size": 64})
    items = list_items(kind, source)  # before torch and the model load: the source and --out are checked first
    read_rows(Path(a.out), digest=None)
    from dfmm.serving.inference import load_model

    model, _ = load_model(a.model, a.runtime)
    check_can_score(model, kind)
    return score_to_csv(
        model,
        kind,
        source,
        a.out,
        batch_size=a.batch_size,
        face_crop=a.face_crop,
        num_frames=a.num_frames,
        aggregation=a.aggregation,
        progress=not a.quiet,
        items=items,
    )


def cmd_export(a: argparse.Namespace) -> dict[str, Any]:
    import time

    from dfmm.models.export import export_model

    t0 = time.perf_counter()
    manifest = export_model(a.model, a.out, frozen=a.frozen)
    out = Path(a.out)
    return {
        "out": str(out),
        "kind": manifest["kind"],
        "graphs": {name: g["file"] for name, g in manifest["graphs"].items()},
        "frozen_missing": manifest["frozen_missing"],
        "megabytes": round(sum(p.stat().st_size for p in out.iterdir()) / 2**20, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "use": f"dfmm classify {'text TEXT' if manifest['kind'] == 'text_branch' else 'image PHOTO'} --model {out} "
        "--runtime openvino",
    }
