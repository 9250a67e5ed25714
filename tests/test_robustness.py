"""Robustness sweep and format control: perturbations that are exact, repeatable and blind to the label, scored
through the study's own scoring with a paired AUC change (``dfmm.analysis.robustness``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dfmm.analysis.robustness import (
    FORMAT_CONTROLS,
    IMAGE_PERTURBATIONS,
    IMAGE_SWEEP,
    TEXT_PERTURBATIONS,
    TEXT_SWEEP,
    format_control,
    perturb_image,
    perturb_images,
    perturb_text,
    perturb_texts,
    plot_robustness,
    robustness_rows,
    robustness_sweep,
    typos,
)
from dfmm.data.images import ImageSet
from dfmm.data.text import TextSet

PARAGRAPH = (
    "Researchers gathered in the old library to discuss whether the manuscripts had been copied by hand or "
    "printed with movable type. The evidence was mixed: some pages carried ink blots, others had perfectly even "
    "margins. After a long afternoon of careful comparison, the group agreed that a second visit would be needed, "
    "with better lighting and a magnifying glass, before anyone could write the report. Meanwhile the archivist "
    "promised to photograph every page so that the scans could be studied at home over the winter holidays."
)


def _face(seed: int, size: int = 64) -> Image.Image:
    """A smooth gradient with noise: enough detail for JPEG quality to matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([200 * x, 200 * y, 120 + 80 * x * y], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).mean())


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


# ---------------------------------------------------------------------------------------------------- images
def test_png_is_pixel_identical_and_jpeg_quality_orders_the_damage():
    img = _face(0)
    assert np.array_equal(np.asarray(perturb_image("png", img)), np.asarray(img))
    assert _diff(perturb_image("jpeg_30", img), img) > _diff(perturb_image("jpeg_90", img), img) > 0
    assert _diff(perturb_image("jpeg_50", img), img) > _diff(perturb_image("jpeg_95", img), img)


@pytest.mark.parametrize("name", list(IMAGE_PERTURBATIONS))
def test_image_perturbations_keep_the_size_and_repeat_under_a_seed(name):
    img = _face(1, size=60).resize((60, 44))
    out = perturb_image(name, img, seed=3)
    assert out.size == img.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(perturb_image(name, img, seed=3)))
    assert (name == "png") == np.array_equal(np.asarray(out), np.asarray(img))  # only png changes nothing


def test_blur_and_downscale_lose_detail_in_order():
    img = _face(2)
    assert _diff(perturb_image("blur_2", img), img) > _diff(perturb_image("blur_1", img), img) > 0
    assert _diff(perturb_image("downscale_0.25", img), img) > _diff(perturb_image("downscale_0.5", img), img) > 0


def test_a_set_is_perturbed_the_same_for_both_classes_and_held_as_lossless_png():
    from dfmm.data.images import load_image

    img = _face(3)
    both = ImageSet([img, img], np.array([0, 1]), ["g", "g"], ["real.png", "fake.png"])
    for name in IMAGE_SWEEP:
        out = perturb_images(both, name, seed=5)
        assert out.sources[0] == out.sources[1] and out.sources[0][:8] == b"\x89PNG\r\n\x1a\n"
        assert list(out.labels) == [0, 1] and out.groups == both.groups
        decoded = load_image(out.sources[0])
        assert np.array_equal(np.asarray(decoded), np.asarray(perturb_image(name, img, seed=5)))


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown perturbation 'jpeg_10'.*jpeg_90"):
        perturb_image("jpeg_10", _face(0))
    with pytest.raises(ValueError, match="unknown perturbation 'shout'.*typos_2pct"):
        perturb_text("shout", "hello")


# ----------------------------------------------------------------------------------------------------- texts
@pytest.mark.parametrize("seed", range(5))
def test_typos_change_about_two_percent_of_characters(seed):
    text = PARAGRAPH * 2
    out = typos(text, seed=seed)
    assert 0.01 <= _levenshtein(text, out) / len(text) <= 0.03
    assert out == typos(text, seed=seed) and out != typos(text, seed=seed + 100)
    assert 0 < len(text) - len(out) < 0.03 * len(text) or len(out) == len(text)  # drops only shorten


def test_case_whitespace_keeps_the_letters_and_repeats_under_a_seed():
    text = PARAGRAPH.replace(". ", ".\n\n")
    out = perturb_text("case_whitespace", text, seed=1)
    assert out != text and out.lower() != text.lower()  # both case and spacing changed
    assert "".join(out.split()).lower() == "".join(text.split()).lower()
    assert out == perturb_text("case_whitespace", text, seed=1) != perturb_text("case_whitespace", text, seed=2)


@pytest.mark.parametrize("name", [n for n in TEXT_PERTURBATIONS if not n.startswith("truncate_")])
def test_a_text_set_is_perturbed_the_same_for_both_classes(name):
    both = TextSet([PARAGRAPH, PARAGRAPH], np.array([0, 1]), ["a", "b"], {"domain": ["x", "y"]})
    out = perturb_texts(both, name, seed=9)
    assert out.texts[0] == out.texts[1] != PARAGRAPH
    assert list(out.labels) == [0, 1] and out.meta == {"domain": ["x", "y"]}


# ------------------------------------------------------------------------------------- with tiny checkpoints
@pytest.fixture(scope="module")
def tiny(tiny_models):
    from dfmm.data import data_sources
    from dfmm.data.images import load_images
    from dfmm.data.text import load_texts
    from dfmm.serving.inference import load_model

    model, _ = load_model(tiny_models["ensemble"])
    sources = data_sources(tiny_models["cfg"])
    return model, load_images(sources["images"]), load_texts(sources["texts"])


def test_truncate_gives_a_prefix_of_at_most_n_tokens(tiny):
    model, _, _ = tiny
    tok = model.tokenizer
    text = PARAGRAPH * 3
    assert len(tok(text, add_special_tokens=False)["input_ids"]) > 256
    for n in (64, 128, 256):
        cut = perturb_text(f"truncate_{n}", text, tokenizer=tok)
        assert text.startswith(cut) and len(cut) < len(text)
        assert n - 3 <= len(tok(cut, add_special_tokens=False)["input_ids"]) <= n
    assert perturb_text("truncate_64", "A short text.", tokenizer=tok) == "A short text."
    with pytest.raises(ValueError, match="tokenizer"):
        perturb_text("truncate_64", text)


@pytest.fixture(scope="module")
def sweep(tiny):
    model, images, texts = tiny
    return robustness_sweep(model, images, texts, seed=0, max_items=24, n_resamples=200)


def test_the_sweep_scores_every_perturbation_with_a_paired_auc_change(sweep):
    assert set(sweep) == {"visual", "text"}
    for branch, names in (("visual", IMAGE_SWEEP), ("text", TEXT_SWEEP)):
        r = sweep[branch]
        assert r["n"] == 24 and r["clean"]["n"] == 24 and r["clean"]["ci"]["resampled"] == "groups"
        assert list(r["perturbations"]) == list(names)
        for p in r["perturbations"].values():
            m, c = p["metrics"], p["auc_change"]
            assert m["n"] == 24 and m["ci"]["n_resamples"] == 200 and c["metric"] == "auc"
            # sign convention: difference = AUC clean - AUC perturbed (positive: the perturbation costs AUC)
            assert c["a"] == pytest.approx(r["clean"]["auc"], abs=1e-12)
            assert c["b"] == pytest.approx(m["auc"], abs=1e-12)
            assert c["difference"] == pytest.approx(r["clean"]["auc"] - m["auc"], abs=1e-12)
            assert c["resampled"] == "groups" and c["n_resamples"] == 200
    png = sweep["visual"]["perturbations"]["png"]
    assert png["auc_change"]["difference"] == 0.0 and png["metrics"]["auc"] == sweep["visual"]["clean"]["auc"]
    assert png["metrics"]["accuracy"] == sweep["visual"]["clean"]["accuracy"]  # the same scores, bit for bit
    assert sweep["visual"]["formats"]["real"] and sweep["visual"]["formats"]["fake"]


def test_texts_with_unchanged_tokens_keep_their_clean_score(tiny, sweep):
    """Only texts whose token ids changed are scored again; the result equals scoring every perturbed text."""
    from dfmm.analysis.robustness import _subset
    from dfmm.metrics import binary_metrics
    from dfmm.serving.evaluate import score_texts

    model, _, texts = tiny
    rows = sweep["text"]["perturbations"]
    for name, row in rows.items():
        assert 0 <= row["rescored"] <= row["changed"] <= 24, name
    # all-MiniLM-L6-v2 is uncased and splits on any whitespace: case and spacing give the same tokens
    assert rows["case_whitespace"]["changed"] > 0 and rows["case_whitespace"]["rescored"] == 0
    assert rows["case_whitespace"]["auc_change"]["difference"] == 0.0
    assert rows["typos_2pct"]["rescored"] > 0
    items = _subset(texts, 24, 0)
    full = score_texts(model, perturb_texts(items, "typos_2pct", 0, model.tokenizer))
    expected = binary_metrics(full["labels"], full["probs"], model.threshold("text"))
    assert rows["typos_2pct"]["metrics"]["auc"] == pytest.approx(expected["auc"], abs=1e-9)
    assert rows["typos_2pct"]["metrics"]["confusion"] == expected["confusion"]


def test_the_sweep_subset_is_balanced_seeded_and_repeatable(tiny, sweep):
    model, images, _ = tiny
    again = robustness_sweep(model, images, seed=0, max_items=24, n_resamples=200, image_perturbations=["jpeg_30"])
    assert again["visual"]["clean"] == sweep["visual"]["clean"]
    assert again["visual"]["perturbations"]["jpeg_30"] == sweep["visual"]["perturbations"]["jpeg_30"]
    assert again["visual"]["clean"]["confusion"][0][0] + again["visual"]["clean"]["confusion"][0][1] == 12
    items = robustness_sweep(model, images, seed=0, max_items=24, n_resamples=200, groups=False, image_perturbations=[])
    assert items["visual"]["clean"]["ci"]["resampled"] == "items"


def test_format_control_reuses_the_sweep_and_reads_the_png_row(tiny, sweep):
    model, images, _ = tiny
    fc = format_control(model, images, sweep["visual"])
    assert list(fc["perturbations"]) == list(FORMAT_CONTROLS)
    assert fc["perturbations"]["jpeg_95"] == sweep["visual"]["perturbations"]["jpeg_95"]
    assert fc["interpretation"].startswith("Lossless PNG re-encode (no pixel changed): AUC change exactly 0")
    assert "quality 95" in fc["interpretation"]
    alone = format_control(model, images, seed=0, max_items=24, n_resamples=200)
    assert alone["perturbations"] == fc["perturbations"] and alone["clean"] == fc["clean"]


def test_interpretation_names_a_jpeg_shortcut():
    from dfmm.analysis.robustness import interpret_format_control

    def row(d, ci, excludes):
        return {"auc_change": {"difference": d, "ci": ci, "excludes_zero": excludes}}

    drop = {"perturbations": {"png": row(0.0, [0.0, 0.0], False), "jpeg_95": row(0.2, [0.1, 0.3], True)}}
    drop["formats"] = {"real": {"JPEG": 10}, "fake": {"PNG": 9, "JPEG": 1}}
    text = interpret_format_control(drop)
    assert "relies on compression traces" in text and "0.200 [0.100, 0.300]" in text
    assert "real mostly JPEG, fake mostly PNG" in text
    noise = {"perturbations": {"png": row(0.01, None, False), "jpeg_95": row(0.01, [-0.02, 0.04], False)}}
    text = interpret_format_control(noise)
    assert "not deterministic" in text and "includes 0" in text


def test_rows_and_plot_show_every_perturbation(sweep):
    rows = robustness_rows(sweep)
    assert [r["perturbation"] for r in rows] == ["clean", *IMAGE_SWEEP, "clean", *TEXT_SWEEP]
    png = next(r for r in rows if r["perturbation"] == "png")
    assert png["clean - perturbed [95% CI]"].startswith("+0.000") and png["excludes 0"] == "no"
    fig = plot_robustness(sweep["visual"], "visual")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(IMAGE_SWEEP)
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # the clean AUC
    import matplotlib.pyplot as plt

    plt.close(fig)
