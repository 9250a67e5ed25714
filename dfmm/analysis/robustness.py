"""Robustness to post-processing, and the format-shortcut control.

A detector is scored again on its test split after the same named perturbation is applied to every item, real
and fake alike: JPEG re-encoding, Gaussian blur and down-then-up scaling for faces (the post-processing sweep of
Wang et al. 2020, "CNN-generated images are surprisingly easy to spot... for now"), truncation, typos and case /
whitespace noise for texts. Perturbations are a registry of named functions (``IMAGE_PERTURBATIONS``,
``TEXT_PERTURBATIONS``), timm style, so a sweep is a list of names.

Each perturbed split goes through the study's own scoring (``dfmm.serving.evaluate.score_images`` / ``score_texts``, the
checkpoint's decision rule and TTA); perturbed images are handed over as losslessly encoded PNG bytes, so the
perturbation is exactly what is measured. The AUC change against the clean split is a paired bootstrap on the
same items, resampled by group (``dfmm.metrics.paired_bootstrap``): ``difference`` = AUC clean - AUC perturbed,
so a positive change is a drop.

The format control asks whether the detector reads the container instead of the face: when real and fake
images come in different formats (real JPEGs, fake PNGs), a classifier can learn JPEG traces, the "JPEG
shortcut". ``png`` re-encodes losslessly: no pixel changes, so its AUC change must be exactly 0 (a sanity row);
``jpeg_95`` is a near-invisible re-encode: a clear AUC drop under it (paired CI excluding 0) says the detector
relies on compression traces.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from dfmm.data.images import ImageSet, image_format, load_image
from dfmm.data.labels import FAKE
from dfmm.data.splits import subset_by_group
from dfmm.data.text import TextSet
from dfmm.errors import DataError
from dfmm.metrics import metrics_with_ci, paired_bootstrap
from dfmm.serving.evaluate import score_images, score_texts

TYPO_RATE = 0.02  # typos_2pct: the share of characters changed
CASE_FLIP_P = 0.1  # case_whitespace: the chance that a word's case is changed
DOUBLE_SPACE_P = 0.1  # ... that a single space is doubled
COLLAPSE_P = 0.5  # ... that a longer whitespace run (a line break, two spaces) collapses to one space

POST_PROCESSING = ("jpeg_90", "jpeg_70", "jpeg_50", "jpeg_30", "blur_1", "blur_2", "downscale_0.5", "downscale_0.25")
FORMAT_CONTROLS = ("png", "jpeg_95")
IMAGE_SWEEP = (*POST_PROCESSING, *FORMAT_CONTROLS)
TEXT_SWEEP = ("truncate_64", "truncate_128", "truncate_256", "typos_2pct", "case_whitespace")


# -------------------------------------------------------------------------------------------------- images
def _decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def _encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt, **options)
    return buf.getvalue()


def jpeg(img: Image.Image, quality: int, seed: int = 0) -> Image.Image:
    """Re-encode as JPEG at ``quality`` with Pillow's defaults (4:2:0 chroma subsampling), as a re-save does."""
    return _decode(_encode(img, "JPEG", quality=quality))


def png(img: Image.Image, seed: int = 0) -> Image.Image:
    """Lossless PNG re-encode: the same pixels in another container (the format control's sanity row)."""
    return _decode(_encode(img, "PNG", compress_level=1))


def blur(img: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (Pillow's ``GaussianBlur`` radius is the sigma)."""
    return img.convert("RGB").filter(ImageFilter.GaussianBlur(radius=sigma))


def downscale(img: Image.Image, factor: float, seed: int = 0) -> Image.Image:
    """Down to ``factor`` of each side and back up to the original size, bilinear both ways (detail lost, size kept)."""
    img = img.convert("RGB")
    small = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img.resize(small, Image.Resampling.BILINEAR).resize(img.size, Image.Resampling.BILINEAR)


IMAGE_PERTURBATIONS: dict[str, Callable[..., Image.Image]] = {
    **{f"jpeg_{q}": partial(jpeg, quality=q) for q in (95, 90, 70, 50, 30)},
    "png": png,
    "blur_1": partial(blur, sigma=1.0),
    "blur_2": partial(blur, sigma=2.0),
    "downscale_0.5": partial(downscale, factor=0.5),
    "downscale_0.25": partial(downscale, factor=0.25),
}


def perturb_image(name: str, img: Image.Image, seed: int = 0) -> Image.Image:
    """``IMAGE_PERTURBATIONS[name]`` applied to an RGB image (the same call for real and fake images)."""
    return IMAGE_PERTURBATIONS[_known(name, IMAGE_PERTURBATIONS)](img, seed=seed)


# --------------------------------------------------------------------------------------------------- texts
def _rng(seed: int, text: str) -> np.random.Generator:
    """A generator seeded by the sweep's seed and the text itself: the same text gets the same noise in any order."""
    digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8, key=str(seed).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def truncate(text: str, n_tokens: int, tokenizer: Any, seed: int = 0) -> str:
    """The first ``n_tokens`` tokens of ``tokenizer`` (no special tokens), cut at the last kept token's character
    offset: a prefix of the text that the tokenizer reads as at most ``n_tokens`` tokens."""
    if tokenizer is None:
        raise ValueError("truncate: needs the model's tokenizer (the checkpoint's `model.tokenizer`)")

    def encode(t: str, limit: int) -> list[tuple[int, int]]:
        enc = tokenizer(t, add_special_tokens=False, truncation=True, max_length=limit, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    offsets = encode(text, n_tokens + 1)
    if len(offsets) <= n_tokens:
        return text
    keep = n_tokens
    while keep > 0:  # a word cut between its sub-tokens can re-tokenise longer: step back until it fits
        prefix = text[: offsets[keep - 1][1]]
        if len(encode(prefix, n_tokens + 1)) <= n_tokens:
            return prefix
        keep -= 1
    return ""


def typos(text: str, rate: float = TYPO_RATE, seed: int = 0) -> str:
    """About ``rate`` of the characters changed: letters swapped with the next letter (two characters), dropped
    or replaced by another letter of the same case (one each). The count is drawn so its expectation is exactly
    ``rate * len(text)``; edits never touch the same or a neighbouring character."""
    rng = _rng(seed, text)
    budget = rate * len(text)
    budget = int(budget) + int(rng.random() < budget - int(budget))
    letters = [i for i, c in enumerate(text) if c.isalpha()]
    order = rng.permutation(len(letters))
    chars = list(text)
    touched: set[int] = set()
    edits: list[tuple[int, str]] = []
    for k in order:
        if budget <= 0:
            break
        i = letters[k]
        if {i - 1, i, i + 1} & touched:
            continue
        kind = ["swap", "drop", "replace"][int(rng.integers(3))]
        nxt = i + 1
        if kind == "swap" and (budget < 2 or nxt >= len(text) or not text[nxt].isalpha() or text[nxt] == text[i]):
            kind = "replace"
        if kind == "swap":
            if nxt + 1 in touched:
                continue
            chars[i], chars[nxt] = chars[nxt], chars[i]
            touched |= {i, nxt}
            budget -= 2
            continue
        if kind == "replace":
            pool = "abcdefghijklmnopqrstuvwxyz".replace(text[i].lower(), "")
            c = pool[int(rng.integers(len(pool)))]
            edits.append((i, c.upper() if text[i].isupper() else c))
        else:
            edits.append((i, ""))
        touched.add(i)
        budget -= 1
    for i, c in edits:
        chars[i] = c
    return "".join(chars)


def case_whitespace(text: str, seed: int = 0) -> str:
    """Case and spacing noise: a word's case changed (upper, lower or capitalised) with p ``CASE_FLIP_P``; a
    single space doubled with p ``DOUBLE_SPACE_P``; a longer whitespace run collapsed to one space with p
    ``COLLAPSE_P``. Letters and their order are kept."""
    rng = _rng(seed, text)
    out = []
    for part in re.split(r"(\s+)", text):
        if not part:
            continue
        if part.isspace():
            if part == " ":
                out.append("  " if rng.random() < DOUBLE_SPACE_P else part)
            else:
                out.append(" " if rng.random() < COLLAPSE_P else part)
        elif rng.random() < CASE_FLIP_P:
            out.append((str.upper, str.lower, str.capitalize)[int(rng.integers(3))](part))
        else:
            out.append(part)
    return "".join(out)


TEXT_PERTURBATIONS: dict[str, Callable[..., str]] = {
    **{f"truncate_{n}": partial(truncate, n_tokens=n) for n in (64, 128, 256)},
    "typos_2pct": partial(typos, rate=TYPO_RATE),
    "case_whitespace": case_whitespace,
}


def perturb_text(name: str, text: str, seed: int = 0, tokenizer: Any = None) -> str:
    """``TEXT_PERTURBATIONS[name]`` applied to a text; ``truncate_*`` needs the model's tokenizer."""
    fn = TEXT_PERTURBATIONS[_known(name, TEXT_PERTURBATIONS)]
    return fn(text, tokenizer=tokenizer, seed=seed) if name.startswith("truncate_") else fn(text, seed=seed)


def _known(name: str, table: dict[str, Any]) -> str:
    if name not in table:
        raise ValueError(f"unknown perturbation {name!r}; expected one of {', '.join(table)}")
    return name


# ----------------------------------------------------------------------------------------------- whole sets
def perturb_images(images: ImageSet, name: str, seed: int = 0, decoded: list[Image.Image] | None = None) -> ImageSet:
    """A copy of ``images`` with ``name`` applied to every image, real and fake alike, held as lossless PNG bytes
    (what ``score_images`` reads is exactly the perturbed pixels). ``decoded``: the images already decoded."""
    fn = IMAGE_PERTURBATIONS[_known(name, IMAGE_PERTURBATIONS)]
    if decoded is None:
        decoded = [load_image(src, n) for src, n in zip(images.sources, images.names, strict=True)]
    encoded = [_encode(fn(img, seed=seed), "PNG", compress_level=1) for img in decoded]
    return ImageSet(encoded, images.labels, images.groups, images.names, f"{images.origin} ({name})", dict(images.meta))


def perturb_texts(texts: TextSet, name: str, seed: int = 0, tokenizer: Any = None) -> TextSet:
    """A copy of ``texts`` with ``name`` applied to every text, human and AI alike."""
    _known(name, TEXT_PERTURBATIONS)
    changed = [perturb_text(name, t, seed, tokenizer) for t in texts.texts]
    return TextSet(changed, texts.labels, texts.groups, {k: list(v) for k, v in texts.meta.items()}, texts.origin)


# --------------------------------------------------------------------------------------------------- sweeps
def _subset(items: ImageSet | TextSet, max_items: int | None, seed: int) -> Any:
    """At most ``max_items`` items, whole groups, half real and half fake where the split allows (the study's
    own balanced, seeded subset: ``dfmm.data.splits.subset_by_group``)."""
    if not max_items:
        return items
    index = subset_by_group(np.arange(len(items)), items.labels, items.groups, max_items, seed, balanced=True)
    return items.subset(index)


def _compare(
    name: str, clean: dict[str, Any], scored: dict[str, Any], threshold: float, groups: Any, seed: int, n: int
) -> dict[str, Any]:
    if not np.array_equal(clean["index"], scored["index"]):
        raise DataError(f"perturbation {name}: scored items differ from the clean split's")
    return {
        "metrics": metrics_with_ci(scored["labels"], scored["probs"], threshold, groups, n, seed),
        "auc_change": paired_bootstrap(
            clean["labels"], clean["probs"], scored["probs"], "auc", groups, n, seed, threshold, threshold
        ),
    }


def _groups(items: ImageSet | TextSet, scored: dict[str, Any], use: bool) -> list[str] | None:
    return [items.groups[i] for i in scored["index"]] if use else None


def sweep_images(
    model: Any,
    images: ImageSet,
    perturbations: tuple[str, ...] | list[str] = IMAGE_SWEEP,
    *,
    seed: int = 0,
    groups: bool = True,
    max_items: int | None = None,
    n_resamples: int = 1000,
    batch_size: int = 32,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """The visual branch on the clean subset and on each perturbed copy of it (module docstring)."""
    items = _subset(images, max_items, seed)
    decoded, keep = [], []
    for i, src in enumerate(items.sources):  # an unreadable image is left out of every row alike
        try:
            decoded.append(load_image(src, items.names[i]))
            keep.append(i)
        except DataError:
            continue
    skipped = len(items) - len(keep)
    items = items.subset(keep)
    formats = _formats(items)
    threshold = model.threshold("visual")
    clean = score_images(model, items, batch_size, cache_dir)
    g = _groups(items, clean, groups)
    out: dict[str, Any] = {
        "branch": "visual",
        "n": len(items),
        "skipped_unreadable": skipped,
        "formats": formats,
        "seed": seed,
        "clean": metrics_with_ci(clean["labels"], clean["probs"], threshold, g, n_resamples, seed),
        "perturbations": {},
    }
    for name in perturbations:
        scored = score_images(model, perturb_images(items, name, seed, decoded), batch_size, cache_dir)
        out["perturbations"][name] = _compare(name, clean, scored, threshold, g, seed, n_resamples)
    return out


def sweep_texts(
    model: Any,
    texts: TextSet,
    perturbations: tuple[str, ...] | list[str] = TEXT_SWEEP,
    *,
    seed: int = 0,
    groups: bool = True,
    max_items: int | None = None,
    n_resamples: int = 1000,
    batch_size: int = 32,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """The text branch on the clean subset and on each perturbed copy of it (module docstring).

    A perturbed text whose token ids equal its clean text's (a ``truncate_256`` of a short text; case and spacing
    for an uncased tokenizer that normalises whitespace) is the same model input, so it keeps its clean score;
    only the others are scored again (``rescored``; ``changed``: texts whose characters changed).
    """
    items = _subset(texts, max_items, seed)
    threshold = model.threshold("text")
    clean = score_texts(model, items, batch_size, cache_dir)
    if not np.array_equal(clean["index"], np.arange(len(items))):
        raise DataError(f"{items.origin}: the text scorer left items out; expected every text scored")
    clean_ids = _token_ids(model.tokenizer, items.texts)
    g = _groups(items, clean, groups)
    out: dict[str, Any] = {
        "branch": "text",
        "n": len(items),
        "seed": seed,
        "clean": metrics_with_ci(clean["labels"], clean["probs"], threshold, g, n_resamples, seed),
        "perturbations": {},
    }
    for name in perturbations:
        perturbed = perturb_texts(items, name, seed, model.tokenizer)
        ids = _token_ids(model.tokenizer, perturbed.texts)
        redo = np.array([i for i, (a, b) in enumerate(zip(clean_ids, ids, strict=True)) if a != b], dtype=int)
        scored = {**clean, "probs": clean["probs"].copy()}
        if len(redo):
            s = score_texts(model, perturbed.subset(redo), batch_size, cache_dir)
            scored["probs"][redo[s["index"]]] = s["probs"]
        row = _compare(name, clean, scored, threshold, g, seed, n_resamples)
        row["changed"] = sum(a != b for a, b in zip(items.texts, perturbed.texts, strict=True))
        row["rescored"] = len(redo)
        out["perturbations"][name] = row
    return out


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Every text's full token ids (no truncation), as ``TokenizedTexts`` computes them before cutting."""
    return tokenizer(texts, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]


def robustness_sweep(
    model: Any,
    images: ImageSet | None = None,
    texts: TextSet | None = None,
    seed: int = 0,
    groups: bool = True,
    *,
    max_items: int | None = None,
    image_perturbations: tuple[str, ...] | list[str] = IMAGE_SWEEP,
    text_perturbations: tuple[str, ...] | list[str] = TEXT_SWEEP,
    n_resamples: int = 1000,
    batch_size: int = 32,
    text_batch_size: int | None = None,
    cache_dir: Any = None,
) -> dict[str, Any]:
    """``{"visual": ..., "text": ...}`` for the sets given, each ``{"clean": metrics_with_ci, "perturbations":
    {name: {"metrics": metrics_with_ci, "auc_change": paired_bootstrap}}, "n", "seed", ...}``.

    Metrics use the checkpoint's threshold (``model.threshold(branch)``) and, with ``groups``, resample whole
    groups; ``auc_change["difference"]`` = AUC clean - AUC perturbed (positive: the perturbation costs AUC),
    with its paired interval on the same resamples. ``max_items`` caps each set at a balanced, seeded subset
    (whole groups); the clean row is scored on that same subset. ``cache_dir``: a study's cache, where the score
    cache (``dfmm.models.score_cache``) already holds the clean rows when the test split was scored before.
    """
    options = {
        "seed": seed,
        "groups": groups,
        "max_items": max_items,
        "n_resamples": n_resamples,
        "cache_dir": cache_dir,
    }
    out: dict[str, Any] = {}
    if images is not None:
        out["visual"] = sweep_images(model, images, image_perturbations, batch_size=batch_size, **options)
    if texts is not None:
        out["text"] = sweep_texts(model, texts, text_perturbations, batch_size=text_batch_size or batch_size, **options)
    return out


def _formats(images: ImageSet) -> dict[str, dict[str, int]]:
    """The file format of each class's images, from the headers (a real-JPEG / fake-PNG split invites a shortcut)."""
    out: dict[str, Counter[str]] = {"real": Counter(), "fake": Counter()}
    for src, lab in zip(images.sources, images.labels, strict=True):
        try:
            fmt = image_format(src)[0]
        except Exception:  # noqa: BLE001 -- an in-memory image or an unreadable header is counted, not fatal
            fmt = "unknown"
        out["fake" if lab == FAKE else "real"][fmt] += 1
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def interpret_format_control(result: dict[str, Any]) -> str:
    """A reading of the ``png`` and ``jpeg_95`` rows (and of the classes' file formats, when present)."""
    rows = result["perturbations"]
    said = []
    if "png" in rows:
        d = rows["png"]["auc_change"]["difference"]
        if d == 0:
            said.append("Lossless PNG re-encode (no pixel changed): AUC change exactly 0, as it must be.")
        else:
            said.append(
                f"Lossless PNG re-encode changed the AUC by {d:.3f} although no pixel changed: the scoring is not "
                "deterministic, and the other rows cannot be read as effects of the perturbation."
            )
    if "jpeg_95" in rows:
        c = rows["jpeg_95"]["auc_change"]
        d, ci = c["difference"], c.get("ci")
        at = f"{d:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{d:.3f} (no interval)"
        if c.get("excludes_zero") and d > 0:
            said.append(
                f"A near-invisible JPEG re-encode at quality 95 lowers the AUC by {at}: the detector relies on "
                "compression traces (the JPEG shortcut), not only on the faces."
            )
        elif c.get("excludes_zero"):
            said.append(
                f"A JPEG re-encode at quality 95 raises the AUC by {-d:.3f} (change {at}): the scores depend on "
                "compression traces."
            )
        else:
            said.append(
                f"A JPEG re-encode at quality 95 changes the AUC by {at}, an interval that includes 0: no sign "
                "that the detector relies on compression traces at this sample size."
            )
    formats = result.get("formats") or {}
    real, fake = formats.get("real") or {}, formats.get("fake") or {}
    if real and fake and max(real, key=real.get) != max(fake, key=fake.get):
        said.append(
            f"The classes come in different formats (real mostly {max(real, key=real.get)}, fake mostly "
            f"{max(fake, key=fake.get)}): a format shortcut is possible."
        )
    return " ".join(said)


def format_control(
    model: Any,
    images: ImageSet,
    sweep: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    groups: bool = True,
    max_items: int | None = None,
    n_resamples: int = 1000,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The ``png`` and ``jpeg_95`` rows with an ``interpretation``; ``formats``: the file formats of each class
    in the scored subset (module docstring).

    ``sweep``: a visual result of ``robustness_sweep`` that already holds both rows (the study's sweep does),
    reused instead of scoring again; otherwise they are scored here (``sweep_images`` with these options).
    """
    if sweep is not None and all(k in sweep.get("perturbations", {}) for k in FORMAT_CONTROLS):
        base = {k: v for k, v in sweep.items() if k != "perturbations"}
        out = base | {"perturbations": {k: sweep["perturbations"][k] for k in FORMAT_CONTROLS}}
    else:
        out = sweep_images(
            model,
            images,
            FORMAT_CONTROLS,
            seed=seed,
            groups=groups,
            max_items=max_items,
            n_resamples=n_resamples,
            batch_size=batch_size,
        )
    out["interpretation"] = interpret_format_control(out)
    return out


# --------------------------------------------------------------------------------------------------- tables
def _interval(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "–"


def robustness_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per branch and perturbation (the clean row first): AUC [CI], change [CI] and whether it excludes 0."""
    rows = []
    for branch, r in result.items():
        c = r["clean"]
        rows.append(
            {
                "branch": branch,
                "perturbation": "clean",
                "AUC [95% CI]": f"{c['auc']:.3f} {_interval((c.get('ci') or {}).get('auc'))}",
                "clean - perturbed [95% CI]": "–",
                "excludes 0": "–",
            }
        )
        for name, p in r["perturbations"].items():
            m, d = p["metrics"], p["auc_change"]
            rows.append(
                {
                    "branch": branch,
                    "perturbation": name,
                    "AUC [95% CI]": f"{m['auc']:.3f} {_interval((m.get('ci') or {}).get('auc'))}",
                    "clean - perturbed [95% CI]": f"{d['difference']:+.3f} {_interval(d.get('ci'))}",
                    "excludes 0": "yes" if d.get("excludes_zero") else "no",
                }
            )
    return rows


def plot_robustness(result: dict[str, Any], title: str = "") -> Any:
    """ROC AUC with its 95% bootstrap interval under each perturbation; dashed: the clean AUC (band: its CI)."""
    from dfmm.analysis.plots import _plt

    plt = _plt()
    names = list(result["perturbations"])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.4))
    clean = result["clean"]
    lo_hi = (clean.get("ci") or {}).get("auc")
    if lo_hi:
        ax.axvspan(lo_hi[0], lo_hi[1], color="grey", alpha=0.15, lw=0)
    ax.axvline(clean["auc"], color="k", lw=1, ls="--", label=f"clean {clean['auc']:.3f}")
    for y, name in enumerate(names):
        p = result["perturbations"][name]
        auc = p["metrics"]["auc"]
        lo, hi = (p["metrics"].get("ci") or {}).get("auc") or (auc, auc)
        color = "C3" if p["auc_change"].get("excludes_zero") else "C0"
        ax.errorbar(auc, y, xerr=[[auc - lo], [hi - auc]], fmt="o", color=color, capsize=3)
    ax.axvline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(min(0.3, ax.get_xlim()[0]), 1.01)
    ax.set_xlabel("ROC AUC, 95% bootstrap CI (red: paired change excludes 0; dotted: chance)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig
