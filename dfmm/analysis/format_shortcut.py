"""The format control: does the detector read the container instead of the face (the "JPEG shortcut")?

When real and fake images come in different formats (real JPEGs, fake PNGs), a classifier can learn JPEG
traces. ``png`` re-encodes losslessly: no pixel changes, so its AUC change must be exactly 0 (a sanity row);
``jpeg_95`` is a near-invisible re-encode: a clear AUC drop under it (paired CI excluding 0) says the detector
relies on compression traces. The rows are those of the robustness sweep (``dfmm.analysis.sweeps``), reused when
the sweep already scored them; ``interpret_format_control`` says in words what they show.
"""

from __future__ import annotations

from typing import Any

from dfmm.analysis.perturbations import FORMAT_CONTROLS
from dfmm.analysis.sweeps import sweep_images
from dfmm.data.images import ImageSet


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
