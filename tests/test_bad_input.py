"""Every kind of bad input in one table: how it is fed (the CLI or an API call) and what must come back.

A refused input is one ``DfmmError`` line naming the file, key or argument: through the CLI that is exit status 2
and a single ``dfmm: error: ...`` line on stderr; through the API the exception itself. A few inputs that look
odd but are fine (CMYK, 16-bit PNG, an animated GIF, a file with any suffix) are in the table with the result
they must give. Fixtures are made here, in ``tmp_path``, a few bytes each; the cases that need a model use the
session's tiny checkpoints (``tiny_models``) and the cases that must fail before a model loads name a checkpoint
that does not exist, so a check that ran too late shows up as "checkpoint not found". Videos are left out.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dfmm.cli import main
from dfmm.config import load_config
from dfmm.data.images import load_image
from dfmm.data.text import check_text, load_text_file
from dfmm.errors import CheckpointError, DataError, DfmmError
from dfmm.models.checkpoints import load_checkpoint, save_checkpoint
from dfmm.serving.inference import classify_image, classify_text, classify_video, load_model
from dfmm.serving.score_files import COLUMNS

from .conftest import ROOT

DEMO = str(ROOT / "params" / "demo.yaml")


class Ctx:
    """What a case builds its input with: files under tmp_path, the tiny models, stdin."""

    def __init__(self, tmp: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self._request, self._monkeypatch = tmp, request, monkeypatch
        self.never_loaded = str(tmp / "never-loaded.pt")  # a check that runs after load_model fails on this

    def file(self, name: str, data: bytes | str) -> str:
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(p)

    def model(self, kind: str) -> str:
        return str(self._request.getfixturevalue("tiny_models")[kind])

    def stdin(self, data: bytes) -> None:
        self._monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))

    def runs(self) -> list[str]:  # a refused config must not write anything, even under runs/
        return ["-p", f"study.runs_dir={self.tmp / 'runs'}"]

    def checkpoint(self, name: str, kind: str = "visual_branch", state: Any = None, meta: Any = None) -> str:
        state = {"w": torch.ones(2)} if state is None else state
        return str(save_checkpoint(self.tmp / name, kind, state, {} if meta is None else meta))


# ------------------------------------------------------------------------------------------- tiny fixtures
def _image_bytes(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _jpeg(size: int = 32) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return _image_bytes(Image.fromarray(noise), "JPEG")


def _gif_red_then_blue() -> bytes:
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    return _image_bytes(red, "GIF", save_all=True, append_images=[blue], duration=50, loop=0)


def _png_bomb() -> bytes:
    """A 100-byte PNG whose header claims 20000 x 20000 pixels: refused on its header, never decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _evil_checkpoint(t: Ctx) -> str:
    p = t.tmp / "evil.pt"
    torch.save({"format": "dfmm", "version": 1, "kind": "visual_branch", "meta": "{}", "state": {}, "x": Evil()}, p)
    return str(p)


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _pixel(img: Image.Image) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return img.getpixel((img.width // 2, img.height // 2))


def _close(px: tuple[int, ...], want: tuple[int, ...], tol: int = 3) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px, want, strict=True))


# ------------------------------------------------------------------------------------------------ the table
@dataclass
class Case:
    id: str
    feed: str  # "cli": make(ctx) gives argv for dfmm.cli.main; "api": make(ctx) makes the call itself
    make: Callable[[Ctx], Any]
    error: str | None = None  # the refused input: a substring of the one-line message
    check: Callable[[Any], bool] | None = None  # the accepted input: a predicate on the result (CLI: its JSON)
    raises: type[DfmmError] = DfmmError  # api errors: the class


def cli(id: str, make: Callable[[Ctx], list[str]], error: str | None = None, check: Any = None) -> Any:
    return pytest.param(Case(id, "cli", make, error, check), id=id)


def api(id: str, make: Callable[[Ctx], Any], error: str | None = None, check: Any = None, raises: Any = DfmmError):
    return pytest.param(Case(id, "api", make, error, check, raises), id=id)


def _train(*overrides: str) -> Callable[[Ctx], list[str]]:
    """``dfmm train visual demo.yaml -p ...``: only ever with a refused config, so nothing trains."""
    return lambda t: ["train", "visual", DEMO, *[a for o in overrides for a in ("-p", o)], *t.runs()]


def _classify_text(*args: str, model: str = "") -> Callable[[Ctx], list[str]]:
    return lambda t: ["classify", "text", *args, "--model", t.model(model) if model else t.never_loaded]


CASES = [
    # ---- params: types, keys and ranges, all refused before any work (train would save a checkpoint)
    cli("cfg-epochs-negative", _train("visual.epochs=-1", "study.name=x"), "visual.epochs = -1; expected >= 1"),
    cli("cfg-epochs-zero-text", _train("text.epochs=0"), "text.epochs = 0; expected >= 1"),
    cli("cfg-batch-size-zero", _train("visual.batch_size=0"), "visual.batch_size = 0; expected >= 1"),
    cli("cfg-recipe-batch-size", _train("text.recipes.card.batch_size=-4"), "text.recipes.card.batch_size = -4"),
    cli("cfg-num-frames-zero", _train("video.num_frames=0"), "video.num_frames = 0; expected >= 1"),
    cli("cfg-image-size-zero", _train("visual.image_size=0"), "visual.image_size = 0; expected an integer in 32..1024"),
    cli("cfg-image-size-huge", _train("visual.image_size=30000"), "visual.image_size = 30000; expected an integer in"),
    cli("cfg-max-length-zero", _train("text.max_length=0"), "text.max_length = 0; expected an integer in 8..4096"),
    cli(
        "cfg-backbone-not-servable",
        _train("visual.backbone=hub:vit_huge_patch14_224"),
        "visual.backbone names 'vit_huge_patch14_224'; a dfmm checkpoint holds one of tf_efficientnet_lite0, efficientnet_b0",
    ),
    cli(
        "cfg-file-backbone-timm-name",
        _train("visual.backbone=file:w.pt", "visual.timm_name=resnet50"),
        "visual.timm_name names 'resnet50'",
    ),
    api(
        "cfg-hub-backbone-with-tag-ok",
        lambda t: load_config([DEMO], ["visual.backbone=hub:efficientnet_b0.ra_in1k"]),
        check=lambda c: c.visual.backbone == "hub:efficientnet_b0.ra_in1k",
    ),
    cli("cfg-lr-zero", _train("visual.recipes.improved.lr=0"), "visual.recipes.improved.lr = 0.0; expected > 0"),
    cli("cfg-lr-nan", _train("visual.recipes.card.lr=.nan"), "lr = nan; expected a finite number > 0"),
    cli("cfg-fusion-lr-inf", _train("fusion.lr=.inf"), "fusion.lr = inf; expected a finite number > 0"),
    cli("cfg-dropout-over-1", _train("visual.dropout=1.5"), "visual.dropout = 1.5; expected a number in [0, 1)"),
    cli("cfg-text-dropout-neg", _train("text.dropout=-0.1"), "text.dropout = -0.1"),
    cli(
        "cfg-warmup-fraction",
        _train("visual.recipes.improved.warmup_fraction=1.5"),
        "warmup_fraction = 1.5; expected a number in [0, 1]",
    ),
    cli("cfg-label-smoothing", _train("visual.recipes.card.label_smoothing=-0.2"), "label_smoothing = -0.2"),
    cli("cfg-val-fraction", _train("data.val_fraction=0.7"), "data.val_fraction = 0.7; expected a number in (0, 0.5)"),
    cli("cfg-study-seed", _train("study.seed=-1"), "study.seed = -1; expected >= 0"),
    cli("cfg-branch-seeds", _train("visual.seeds=0"), "visual.seeds = 0; expected >= 1"),
    cli("cfg-recipe-seeds", _train("text.recipes.improved.seeds=-1"), "text.recipes.improved.seeds = -1"),
    cli("cfg-max-images", _train("data.max_images=-5"), "data.max_images = -5; expected >= 0 (0 = all)"),
    cli("cfg-weight-decay", _train("visual.recipes.card.weight_decay=-1"), "weight_decay = -1.0; expected >= 0"),
    cli("cfg-names-the-override", _train("visual.epochs=-1"), "(-p visual.epochs=-1): visual.epochs = -1"),
    cli(
        "cfg-names-the-file",
        lambda t: ["train", "visual", DEMO, t.file("bad.yaml", "visual:\n  epochs: 0\n"), *t.runs()],
        "bad.yaml: visual.epochs = 0; expected >= 1",
    ),
    cli("cfg-study-name-dotdot", _train("study.name=.."), "study.name = '..'; expected a plain folder name"),
    cli("cfg-unknown-key", _train("visual.epoch=1"), "unknown key 'epoch' (did you mean 'epochs'?)"),
    cli("cfg-wrong-type", _train("visual.epochs=three"), "visual.epochs: expected int"),
    cli("cfg-missing-params-file", lambda t: ["train", "visual", str(t.tmp / "nope.yaml")], "params file not found"),
    api("cfg-max-images-zero-is-all", lambda t: load_config([DEMO], ["data.max_images=0"]), check=lambda c: True),
    # ---- CLI integers: argparse's own errors, one line, status 2
    cli(
        "cli-batch-size-zero",
        lambda t: ["evaluate", "--model", t.never_loaded, "--texts", "x.jsonl", "--batch-size", "0"],
        "--batch-size must be >= 1, got 0",
    ),
    cli(
        "cli-batch-size-word",
        lambda t: ["evaluate", "--model", t.never_loaded, "--images", "x", "--batch-size", "ten"],
        "--batch-size must be an integer >= 1, got 'ten'",
    ),
    cli(
        "cli-num-frames-negative",
        lambda t: ["evaluate", "--model", t.never_loaded, "--videos", "x", "--num-frames", "-1"],
        "--num-frames must be >= 1, got -1",
    ),
    cli(
        "cli-classify-num-frames-zero",
        lambda t: ["classify", "video", "x.mp4", "--model", t.never_loaded, "--num-frames", "0"],
        "--num-frames must be >= 1, got 0",
    ),
    cli("cli-missing-required", lambda t: ["evaluate", "--images", "x"], "required: --model"),
    # ---- text inputs: a file only when it exists; what looks like a path and is missing is an error
    cli(
        "text-missing-txt",
        _classify_text("missing.txt"),
        "missing.txt: no such file (use --string to classify the text itself)",
    ),
    cli("text-missing-upper-suffix", _classify_text("ESSAY.TXT"), "ESSAY.TXT: no such file (use --string"),
    cli("text-missing-jsonl", _classify_text("data.jsonl"), "data.jsonl: no such file"),
    cli("text-missing-with-separator", _classify_text("drafts/essay"), "drafts/essay: no such file"),
    cli("text-file-flag-missing", _classify_text("--file", "hello"), "hello: no such file"),
    cli("text-directory", lambda t: ["classify", "text", str(t.tmp), "--model", t.never_loaded], "is a directory"),
    cli(
        "text-file-not-utf8",
        lambda t: [
            "classify",
            "text",
            t.file("latin.txt", "caf\xe9 au lait".encode("latin-1")),
            "--model",
            t.never_loaded,
        ],
        "latin.txt: not valid UTF-8 at byte 3",
    ),
    cli(
        "text-stdin-not-utf8",
        lambda t: t.stdin(b"ok then \xff\xfe") or ["classify", "text", "-", "--model", t.never_loaded],
        "<stdin>: not valid UTF-8 at byte 8",
    ),
    cli(
        "text-empty-file",
        lambda t: ["classify", "text", t.file("blank.md", " \n\t\n"), "--model", t.never_loaded],
        "blank.md: text is empty or whitespace only",
    ),
    cli("text-empty-string", _classify_text(""), "text argument 1: text is empty or whitespace only"),
    cli("text-emoji-only", _classify_text("--string", "\U0001f600\U0001f389 !!"), "no words to score"),
    cli("text-control-chars-only", _classify_text("\x01\x02\x7f"), "no words to score"),
    cli(
        "text-flag-on-image",
        lambda t: ["classify", "image", "a.jpg", "--string", "--model", t.never_loaded],
        "--string: does not apply to classify image",
    ),
    cli(
        "text-existing-file-any-suffix",
        _classify_text("{file}", model="text"),
        check=lambda r: r["input_kind"] == "file" and r["label"] in ("real", "fake"),
    ),
    cli(
        "text-plain-string",
        _classify_text("Moreover, it is essential to delve into the topic.", model="text"),
        check=lambda r: r["input_kind"] == "string" and 0 <= r["probability_fake"] <= 1,
    ),
    cli(
        "text-long-string-is-no-filename",  # 300 characters: Path.is_file raises ENAMETOOLONG, not False
        _classify_text("x" * 300, model="text"),
        check=lambda r: r["input_kind"] == "string",
    ),
    cli(
        "text-string-flag-over-existing-file",
        _classify_text("--string", "{file}", model="text"),
        check=lambda r: r["input_kind"] == "string",
    ),
    cli(
        "text-stdin-with-bom",
        lambda t: t.stdin("\ufeffIn conclusion, the overview helps.".encode()) or _classify_text("-", model="text")(t),
        check=lambda r: r["input"] == "<stdin>" and r["input_kind"] == "stdin",
    ),
    # ---- text through the API
    api(
        "api-lone-surrogate",
        lambda t: _api_classify_text(t, "abc\ud800def"),
        "text: lone surrogate U+D800 at character 3",
        raises=DataError,
    ),
    api(
        "api-emoji-only", lambda t: _api_classify_text(t, "\U0001f600\U0001f600"), "no words to score", raises=DataError
    ),
    api("api-none-text", lambda t: check_text(None, "text"), "text: text is missing (None)", raises=DataError),
    api("api-bytes-text", lambda t: check_text(b"hi", "text"), "text must be a string, got bytes", raises=DataError),
    api("api-other-script-ok", lambda t: check_text("\u4f60\u597d\u4e16\u754c", "text"), check=lambda s: len(s) == 4),
    api("api-digits-ok", lambda t: check_text("2024", "text"), check=lambda s: s == "2024"),
    # ---- images through the API: types, arrays, files
    api("img-none", lambda t: load_image(None), "expected a path, PIL image or HxWxC uint8/float array, got NoneType"),
    api("img-int", lambda t: load_image(42), "expected a path, PIL image or HxWxC uint8/float array, got int"),
    api("img-list", lambda t: load_image([[1, 2]]), "got list", raises=DataError),
    api("img-empty-array", lambda t: load_image(np.zeros((0, 0, 3), np.uint8)), "empty array of shape (0, 0, 3)"),
    api("img-empty-2d", lambda t: load_image(np.zeros((4, 0), np.float32)), "empty array of shape (4, 0)"),
    api("img-nan-array", lambda t: load_image(np.full((4, 4, 3), np.nan)), "holds NaN or infinite values"),
    api("img-inf-array", lambda t: load_image(np.full((4, 4), np.inf, np.float32)), "holds NaN or infinite values"),
    api("img-4d-array", lambda t: load_image(np.zeros((1, 4, 4, 3), np.uint8)), "got shape (1, 4, 4, 3)"),
    api("img-1d-array", lambda t: load_image(np.zeros(12, np.uint8)), "got shape (12,)"),
    api("img-2-channels", lambda t: load_image(np.zeros((4, 4, 2), np.uint8)), "got shape (4, 4, 2)"),
    api("img-object-array", lambda t: load_image(np.full((2, 2, 3), None)), "got dtype object", raises=DataError),
    api("img-float-array-ok", lambda t: load_image(np.full((4, 4, 3), 1.0)), check=lambda im: _pixel(im) == (255,) * 3),
    api(
        "img-uint8-gray-ok", lambda t: load_image(np.full((4, 4), 7, np.uint8)), check=lambda im: _pixel(im) == (7,) * 3
    ),
    api("img-zero-byte-file", lambda t: load_image(t.file("zero.jpg", b"")), "zero.jpg: empty file (0 bytes)"),
    api(
        "img-truncated-jpeg",
        lambda t: load_image(t.file("cut.jpg", _jpeg()[:300])),
        "cut.jpg: corrupt or truncated image",
        raises=DataError,
    ),
    api("img-not-an-image", lambda t: load_image(t.file("notes.png", "hello")), "notes.png: not an image file"),
    api(
        "img-decompression-bomb",
        lambda t: load_image(t.file("bomb.png", _png_bomb())),
        "bomb.png: refused as a decompression bomb (over dfmm's limit of 40,000,000 pixels)",
    ),
    api("img-missing-file", lambda t: load_image(t.tmp / "nope.jpg"), "nope.jpg: no such file"),
    api(
        "img-cmyk-ok",
        lambda t: load_image(t.file("cmyk.jpg", _image_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))),
        check=lambda im: _close(_pixel(im), (255, 0, 0), tol=40),
    ),
    api(
        "img-16bit-png-ok",
        lambda t: load_image(
            t.file("deep.png", _image_bytes(Image.fromarray(np.full((8, 8), 65535, np.uint16)), "PNG"))
        ),
        check=lambda im: _pixel(im) == (255, 255, 255),
    ),
    api(
        "img-animated-gif-first-frame",
        lambda t: load_image(t.file("anim.gif", _gif_red_then_blue())),
        check=lambda im: _close(_pixel(im), (255, 0, 0)),
    ),
    cli(
        "img-cli-truncated",
        lambda t: ["classify", "image", t.file("cut.jpg", _jpeg()[:300]), "--model", t.model("visual")],
        "cut.jpg: corrupt or truncated image",
    ),
    # ---- --gradcam must be a folder, checked before the model loads
    cli(
        "gradcam-is-a-file",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--gradcam", t.file("g.png", b"x")],
        "g.png: is a file, expected a folder",
    ),
    cli(
        "gradcam-under-a-file",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--gradcam", t.file("f", b"x") + "/sub"],
        "is a file, expected a folder",
    ),
    # ---- checkpoints: tensors-only, finite, thresholds in (0, 1), temperatures > 0
    api(
        "ckpt-malicious-pickle",
        lambda t: load_checkpoint(_evil_checkpoint(t)),
        "refused to load",
        raises=CheckpointError,
    ),
    cli(
        "ckpt-cli-malicious-pickle",
        lambda t: ["classify", "text", "hello", "--model", _evil_checkpoint(t)],
        "evil.pt: not a tensors-only dfmm checkpoint",
    ),
    api(
        "ckpt-nan-tensor",
        lambda t: load_checkpoint(t.checkpoint("nan.pt", state={"head.weight": torch.tensor([1.0, float("nan")])})),
        "nan.pt: tensor 'head.weight' holds non-finite values",
        raises=CheckpointError,
    ),
    cli(
        "ckpt-cli-inf-tensor",
        lambda t: ["classify", "text", "hi", "--model", t.checkpoint("inf.pt", state={"w": torch.full((2,), -np.inf)})],
        "inf.pt: tensor 'w' holds non-finite values",
    ),
    api(
        "ckpt-threshold-5",
        lambda t: load_checkpoint(t.checkpoint("t5.pt", meta={"threshold": 5.0})),
        "metadata threshold = 5.0; expected a number between 0 and 1",
    ),
    api("ckpt-threshold-abc", lambda t: load_checkpoint(t.checkpoint("ta.pt", meta={"threshold": "abc"})), "'abc'"),
    api("ckpt-threshold-one", lambda t: load_checkpoint(t.checkpoint("t1.pt", meta={"threshold": 1})), "threshold = 1"),
    api(
        "ckpt-ensemble-visual-threshold",
        lambda t: load_checkpoint(
            t.checkpoint("e.pt", "multimodal_ensemble", meta={"visual": {"threshold": 2}, "text": {"threshold": 0.4}})
        ),
        "multimodal_ensemble metadata visual.threshold = 2",
    ),
    api(
        "ckpt-ensemble-text-threshold-nan",
        lambda t: load_checkpoint(
            t.checkpoint("n.pt", "multimodal_ensemble", meta={"visual": {}, "text": {"threshold": float("nan")}})
        ),
        "text.threshold = nan",
    ),
    api(
        "ckpt-temperature-zero",
        lambda t: load_checkpoint(t.checkpoint("tz.pt", "text_branch", meta={"temperature": 0})),
        "temperature = 0; expected a finite number > 0",
    ),
    api(
        "ckpt-meta-not-object", lambda t: load_checkpoint(t.checkpoint("l.pt", meta=[1, 2])), "metadata is a JSON list"
    ),
    api(
        "ckpt-good-meta-ok",
        lambda t: load_checkpoint(t.checkpoint("ok.pt", meta={"threshold": 0.3, "temperature": 1.5})),
        check=lambda r: r[2] == {"threshold": 0.3, "temperature": 1.5},
    ),
    # ---- evaluation files
    cli(
        "eval-label-outside-0-1",
        lambda t: [
            "evaluate",
            "--model",
            t.model("text"),
            "--texts",
            t.file("two.jsonl", _jsonl([{"text": "a b", "label": 0}, {"text": "c d", "label": 2}])),
        ],
        "two.jsonl:2: label 2 is not 0 (human) or 1 (AI)",
    ),
    cli(
        "eval-one-class-gives-no-auc",  # the reason is metrics.py's business; here: no crash, auc empty
        lambda t: [
            "evaluate",
            "--model",
            t.model("text"),
            "--texts",
            t.file("one.jsonl", _jsonl([{"text": f"plain words {i}", "label": 0} for i in range(4)])),
        ],
        check=lambda r: r["n"] == 4 and (r["auc"] is None or np.isnan(r["auc"])),
    ),
    # ---- options that do not apply to the command are refused, not ignored (#25)
    cli(
        "opt-aggregation-unknown",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--aggregation", "bogus"],
        "invalid choice: 'bogus'",
    ),
    cli(
        "opt-aggregation-on-image",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--aggregation", "max"],
        "--aggregation: does not apply to classify image",
    ),
    cli(
        "opt-num-frames-on-image",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--num-frames", "4"],
        "--num-frames: does not apply to classify image",
    ),
    cli(
        "opt-face-crop-on-text",
        lambda t: ["classify", "text", "hello there", "--model", t.never_loaded, "--face-crop", "always"],
        "--face-crop: does not apply to classify text",
    ),
    cli(
        "opt-all-faces-on-image",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--all-faces"],
        "--all-faces: does not apply to classify image",
    ),
    cli(
        "opt-gradcam-on-video",
        lambda t: ["classify", "video", "a.mp4", "--model", t.never_loaded, "--gradcam", str(t.tmp / "g")],
        "--gradcam: does not apply to classify video",
    ),
    cli(
        "opt-text-on-image",
        lambda t: ["classify", "image", "a.jpg", "--model", t.never_loaded, "--text", "hi"],
        "--text: does not apply to classify image",
    ),
    cli(
        "opt-num-frames-on-evaluate-images",
        lambda t: ["evaluate", "--model", t.never_loaded, "--images", "x", "--num-frames", "4"],
        "--num-frames: does not apply to evaluate --images",
    ),
    cli(
        "opt-face-crop-on-evaluate-texts",
        lambda t: ["evaluate", "--model", t.never_loaded, "--texts", "x.jsonl", "--face-crop", "never"],
        "--face-crop: does not apply to evaluate --texts",
    ),
    cli(
        "opt-batch-size-on-evaluate-videos",
        lambda t: ["evaluate", "--model", t.never_loaded, "--videos", "x", "--batch-size", "4"],
        "--batch-size: does not apply to evaluate --videos",
    ),
    cli(
        "opt-face-crop-on-score-texts",
        lambda t: ["score", "--model", t.never_loaded, "--texts", "x.jsonl", "--out", "o.csv", "--face-crop", "never"],
        "--face-crop: does not apply to score --texts",
    ),
    cli(
        "opt-aggregation-on-score-images",
        lambda t: ["score", "--model", t.never_loaded, "--images", "x", "--out", "o.csv", "--aggregation", "max"],
        "--aggregation: does not apply to score --images",
    ),
    cli(
        "early-evaluate-empty-path",
        lambda t: ["evaluate", "--model", t.never_loaded, "--images", ""],
        "--images: empty path",
    ),
    cli(
        "early-score-out-under-a-file",
        lambda t: [
            "score",
            "--model",
            t.never_loaded,
            "--texts",
            t.file("t.jsonl", _jsonl([{"text": "a b", "label": 0}])),
            "--out",
            str(t.tmp / "t.jsonl" / "o.csv"),
        ],
        "t.jsonl is a file, expected a folder",
    ),
    # ---- inputs are checked before the model loads (10-20 s), wherever the README says "before any work" (#25)
    cli(
        "early-evaluate-images",
        lambda t: ["evaluate", "--model", t.never_loaded, "--images", "nope"],
        "image folder not found: nope",
    ),
    cli(
        "early-evaluate-texts",
        lambda t: ["evaluate", "--model", t.never_loaded, "--texts", str(t.tmp / "no.jsonl")],
        "text file not found",
    ),
    cli(
        "early-evaluate-videos-unlabelled",
        lambda t: ["evaluate", "--model", t.never_loaded, "--videos", str(Path(t.file("v/a.mp4", b"x")).parent)],
        "no labelled clips",
    ),
    cli(
        "early-multimodal-no-input",
        lambda t: ["classify", "multimodal", "--model", t.never_loaded],
        "give --image, --text or both",
    ),
    cli(
        "early-multimodal-missing-image",
        lambda t: ["classify", "multimodal", "--model", t.never_loaded, "--image", str(t.tmp / "no.jpg")],
        "no.jpg: no such file",
    ),
    cli(
        "early-multimodal-empty-text",
        lambda t: ["classify", "multimodal", "--model", t.never_loaded, "--text", "  "],
        "--text: text is empty",
    ),
    cli(
        "early-multimodal-positional",
        lambda t: ["classify", "multimodal", "face.jpg", "--model", t.never_loaded],
        "give the inputs as --image FILE and --text TEXT",
    ),
    cli("early-classify-image-missing", lambda t: ["classify", "image", "no.jpg", "--model", t.never_loaded], "no.jpg"),
    cli(
        "early-classify-video-missing",
        lambda t: ["classify", "video", "no.mp4", "--model", t.never_loaded],
        "no.mp4: no such file",
    ),
    cli(
        "early-score-missing-images",
        lambda t: ["score", "--model", t.never_loaded, "--images", "nope", "--out", str(t.tmp / "o.csv")],
        "--images nope: no such file or folder",
    ),
    cli(
        "early-score-out-not-utf8",
        lambda t: [
            "score",
            "--model",
            t.never_loaded,
            "--texts",
            t.file("t.jsonl", _jsonl([{"text": "a b", "label": 0}])),
            "--out",
            t.file("o.csv", _SCORE_HEADER + b"\xff\xfe,x\r\n"),
        ],
        "not valid UTF-8 at byte",
    ),
    cli(
        "early-score-out-old-format",
        lambda t: [
            "score",
            "--model",
            t.never_loaded,
            "--texts",
            t.file("t.jsonl", _jsonl([{"text": "a b", "label": 0}])),
            "--out",
            t.file("o.csv", b"item,probability_fake,label,true_label,face_found,error,model_digest\r\n"),
        ],
        "written by an older dfmm",
    ),
    cli(
        "early-score-out-before-ood-columns",
        lambda t: [
            "score",
            "--model",
            t.never_loaded,
            "--texts",
            t.file("t.jsonl", _jsonl([{"text": "a b", "label": 0}])),
            "--out",
            t.file("o.csv", b"item,content_digest,probability_fake,label,true_label,face_found,error,model_digest\r\n"),
        ],
        "written by an older dfmm without the in_distribution and uncertain columns",
    ),
    cli(
        "text-dev-zero",
        lambda t: ["classify", "text", "--file", "/dev/zero", "--model", t.never_loaded],
        "/dev/zero: not a regular file",
    ),
    api("img-dev-zero", lambda t: load_image("/dev/zero"), "/dev/zero: not a regular file", raises=DataError),
    # ---- non-finite pixels, whatever the path (#25)
    cli(
        "img-cli-nan-float-tiff",
        lambda t: ["classify", "image", t.file("nan.tif", _float_tiff(np.nan)), "--model", t.model("visual")],
        "nan.tif: float image of 8x8 pixels holds NaN or infinite values",
    ),
    api("img-inf-float-tiff", lambda t: load_image(t.file("inf.tif", _float_tiff(np.inf))), "holds NaN or infinite"),
    api(
        "img-pil-mode-f-nan",
        lambda t: load_image(Image.fromarray(np.full((4, 4), np.nan, np.float32), "F")),
        "holds NaN or infinite values",
    ),
    api("img-tensor-nan", lambda t: load_image(torch.full((3, 4, 4), float("nan"))), "holds NaN or infinite values"),
    api(
        "img-tensor-chw-ok",
        lambda t: load_image(torch.ones(3, 5, 7)),
        check=lambda im: im.size == (7, 5) and _pixel(im) == (255,) * 3,
    ),
    api(
        "img-float-tiff-ok",
        lambda t: load_image(t.file("ok.tif", _float_tiff(0.5))),
        check=lambda im: _close(_pixel(im), (127,) * 3, 1),
    ),
    # ---- texts: CSV fields as long as JSONL texts, byte-order marks (#25)
    api(
        "text-csv-field-over-128k",
        lambda t: load_text_file(t.file("long.csv", "text,label\n" + "word " * 60_000 + ",1\nshort one,0\n")),
        check=lambda s: len(s) == 2 and len(s.text(0)) == 300_000 and list(s.labels) == [1, 0],
    ),
    api(
        "text-csv-bom",
        lambda t: load_text_file(t.file("bom.csv", "\ufefftext,label\nhello there,0\n")),
        check=lambda s: len(s) == 1 and s.text(0) == "hello there",
    ),
    api(
        "text-jsonl-bom",
        lambda t: load_text_file(t.file("bom.jsonl", "\ufeff" + _jsonl([{"text": "hi you", "label": 1}]))),
        check=lambda s: len(s) == 1 and int(s.labels[0]) == 1,
    ),
    api(
        "text-csv-extra-field",
        lambda t: load_text_file(t.file("extra.csv", "text,label\nhello,0,surprise\n")),
        "extra.csv:2: more fields than the header has",
    ),
    api(
        "text-csv-not-utf8",
        lambda t: load_text_file(t.file("latin.csv", "text,label\ncaf\xe9,0\n".encode("latin-1"))),
        "latin.csv: not valid UTF-8",
    ),
    # ---- the API's arguments (#25)
    api("api-load-model-none", lambda t: load_model(None), "load_model: expected the path of a checkpoint file"),
    api("api-load-model-int", lambda t: load_model(123), "got int", raises=CheckpointError),
    api(
        "api-model-tuple",
        lambda t: classify_image(load_model(t.model("visual")), np.zeros((8, 8, 3), np.uint8)),
        "classify_image: got the (model, config) pair that load_model returns; unpack it",
        raises=CheckpointError,
    ),
    api(
        "api-model-path",
        lambda t: classify_image("x.pt", np.zeros((8, 8, 3), np.uint8)),
        "classify_image: model is the path 'x.pt', not a model; load it first",
        raises=CheckpointError,
    ),
    api(
        "api-model-none-text",
        lambda t: classify_text(None, "hello"),
        "classify_text: expected the model",
        raises=CheckpointError,
    ),
    api(
        "api-video-none",
        lambda t: classify_video(load_model(t.model("visual"))[0], None),
        "video: expected the path of a clip (str or Path), got NoneType",
        raises=DataError,
    ),
    api(
        "api-num-frames-str",
        lambda t: classify_video(load_model(t.model("visual"))[0], "x.mp4", num_frames="1"),
        "num_frames must be an integer >= 1, got '1' (str)",
        raises=DataError,
    ),
    api(
        "api-num-frames-bool",
        lambda t: classify_video(load_model(t.model("visual"))[0], "x.mp4", num_frames=True),
        "num_frames must be an integer >= 1, got True",
        raises=DataError,
    ),
    api(
        "api-image-none",
        lambda t: classify_image(load_model(t.model("visual"))[0], None),
        "got NoneType",
        raises=DataError,
    ),
    api(
        "api-aggregation-not-str",
        lambda t: classify_video(load_model(t.model("visual"))[0], "x.mp4", aggregation=None),
        "unknown aggregation None",
        raises=DataError,
    ),
    # ---- study --out: the report folder may not be a file or a folder that is not a report
    cli(
        "study-out-is-a-file",
        lambda t: ["study", DEMO, "--out", t.file("report.html", "x"), *t.runs()],
        "report.html: is a file, expected a folder",
    ),
    cli(
        "study-out-foreign-folder",
        lambda t: ["study", DEMO, "--out", str(Path(t.file("mine/notes.txt", "keep me")).parent), *t.runs()],
        "mine: exists and is not a dfmm report",
    ),
    cli(
        "study-out-project-root",
        lambda t: ["study", DEMO, "--out", ".", *t.runs()],
        "would replace the project",
    ),
]


_SCORE_HEADER = (",".join(COLUMNS) + "\r\n").encode()


def _float_tiff(value: float) -> bytes:
    return _image_bytes(Image.fromarray(np.full((8, 8), value, np.float32), "F"), "TIFF")


def _api_classify_text(t: Ctx, text: str) -> Any:
    model, _ = load_model(t.model("text"))
    return classify_text(model, text)


def _run_cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code or 0)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, tmp_path, request, monkeypatch, capsys):
    t = Ctx(tmp_path, request, monkeypatch)
    if case.feed == "cli":
        argv = case.make(t)
        if "{file}" in argv:  # an existing text file with no usual suffix
            argv[argv.index("{file}")] = t.file("essay.LOG", "honestly the bus was late again and we walked home.")
        rc = _run_cli(argv)
        out, err = capsys.readouterr()
        if case.error is not None:
            lines = err.strip().splitlines()
            assert rc == 2, (out, err)
            assert len(lines) == 1 and lines[0].startswith("dfmm: error: "), err
            assert case.error in lines[0], lines[0]
            assert not out
        else:
            assert rc == 0, err
            assert case.check(json.loads(out)), out
        assert not (tmp_path / "runs").exists()
        return
    if case.error is not None:
        with pytest.raises(case.raises) as e:
            case.make(t)
        msg = str(e.value)
        assert case.error in msg and "\n" not in msg, msg
    else:
        assert case.check(case.make(t))


def test_every_case_has_one_expectation():
    ids = [p.values[0].id for p in CASES]
    assert len(ids) == len(set(ids))
    assert all((p.values[0].error is None) != (p.values[0].check is None) for p in CASES)


def test_gradcam_folder_is_not_left_empty_when_no_overlay_is_written(tiny_models, tmp_path, capsys):
    folder = tmp_path / "overlays"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rc = _run_cli(["classify", "image", str(empty), "--model", str(tiny_models["visual"]), "--gradcam", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and "empty.png: empty file (0 bytes)" in err
    assert not folder.exists()


def test_an_unreadable_image_is_named_as_such_not_as_corrupt(tmp_path, monkeypatch):
    p = tmp_path / "locked.png"
    p.write_bytes(_jpeg())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(Image, "open", denied)  # root reads any file: the denial is simulated where PIL opens it
    with pytest.raises(DataError, match=r"locked.png: cannot read \(Permission denied\)$"):
        load_image(p)
