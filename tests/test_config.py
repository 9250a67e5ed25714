from __future__ import annotations

import json
import re

import pytest

from dfmm.config import load_config, load_resolved, parse_override
from dfmm.errors import ConfigError

from .conftest import ROOT

PARAMS = ROOT / "params"


def test_files_merge_left_to_right_then_overrides():
    cfg = load_config([PARAMS / "compact.yaml", PARAMS / "sources" / "local.yaml"], ["visual.epochs=5"])
    assert cfg.study.budget == "compact"
    assert cfg.data.max_images == 1000 and cfg.data.max_texts == 500
    assert cfg.data.images.endswith("faces/dfdc")  # from local.yaml, the later file
    assert cfg.visual.epochs == 5  # the override wins
    assert cfg.text.epochs == 3
    assert cfg.visual.recipes["card"].optimizer == "adam" and cfg.visual.recipes["card"].lr == pytest.approx(1e-4)
    assert cfg.text.recipes["card"].optimizer == "adamw" and cfg.text.recipes["card"].lr == pytest.approx(2e-5)


@pytest.mark.parametrize(
    "name,images,texts,vis_epochs,txt_epochs",
    [("compact", 1000, 500, 3, 3), ("full", 0, 0, 8, 5)],
)
def test_budgets_match_the_data_card(name, images, texts, vis_epochs, txt_epochs):
    cfg = load_config([PARAMS / f"{name}.yaml"])
    assert (cfg.data.max_images, cfg.data.max_texts) == (images, texts)
    assert (cfg.visual.epochs, cfg.text.epochs) == (vis_epochs, txt_epochs)
    assert (cfg.visual.batch_size, cfg.text.batch_size) == (32, 16)
    assert (cfg.visual.image_size, cfg.text.max_length) == (224, 512)


def test_hub_source_names_the_card_datasets_and_backbones():
    cfg = load_config([PARAMS / "compact.yaml", PARAMS / "sources" / "hub.yaml"])
    assert cfg.data.images == "hub:Hemg/deepfake-and-real-images"
    assert cfg.data.texts == "hub:artem9k/ai-text-detection-pile"
    assert cfg.visual.backbone == "hub:efficientnet_b0" and cfg.text.encoder == "hub:roberta-base"


def test_unknown_key_names_file_and_suggests(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("visual:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config([PARAMS / "compact.yaml", bad])
    msg = str(e.value)
    assert "typo.yaml" in msg and "epoch" in msg and "did you mean 'epochs'" in msg
    assert "\n" not in msg


def test_wrong_type_and_bad_choice(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("visual:\n  epochs: three\n")
    with pytest.raises(ConfigError, match=r"visual\.epochs: expected int"):
        load_config([f])
    f.write_text("fusion:\n  pair_rule: sometimes\n")
    with pytest.raises(ConfigError, match="pair_rule"):
        load_config([f])
    with pytest.raises(ConfigError, match="recipes.card.optimizer"):
        load_config([PARAMS / "compact.yaml"], ["visual.recipes.card.optimizer=lbfgs"])
    with pytest.raises(
        ConfigError,
        match=r"improved\.augment = 'mixup'; expected one of \['card', 'degrade', 'flip', 'none', 'strong'\]",
    ):
        load_config([PARAMS / "compact.yaml"], ["visual.recipes.improved.augment=mixup"])
    with pytest.raises(ConfigError, match=r"text\.recipes\.improved\.seeds = -1"):
        load_config([PARAMS / "compact.yaml"], ["text.recipes.improved.seeds=-1"])
    with pytest.raises(ConfigError, match=r"visual\.seeds = 0; expected >= 1"):
        load_config([PARAMS / "compact.yaml"], ["visual.seeds=0"])
    with pytest.raises(
        ConfigError, match=r"text\.recipes\.card\.label_smoothing = 1\.0; expected a number in \[0, 1\)"
    ):
        load_config([PARAMS / "compact.yaml"], ["text.recipes.card.label_smoothing=1"])


def test_a_retired_recipe_option_is_refused_in_one_line_that_says_so(tmp_path):
    """The options the recipe sweep tried and the study rejected are gone: a params file that sets one is told."""
    f = tmp_path / "old.yaml"
    f.write_text("visual:\n  recipes:\n    improved:\n      ema: 0.98\n")
    with pytest.raises(ConfigError) as e:
        load_config([PARAMS / "compact.yaml", f])
    msg = str(e.value)
    assert msg.startswith(f"{f}: visual.recipes.improved: 'ema' is no longer an option") and "6575cbe" in msg
    assert "\n" not in msg and "did you mean" not in msg
    with pytest.raises(ConfigError, match=r"text\.recipes\.card: 'layer_decay' is no longer an option"):
        load_config([PARAMS / "compact.yaml"], ["text.recipes.card.layer_decay=0.7"])


def test_no_params_file_sets_a_retired_recipe_option():
    from dfmm.config import RETIRED_RECIPE_FIELDS

    for path in sorted(PARAMS.rglob("*.yaml")):
        text = path.read_text()
        assert not [k for k in RETIRED_RECIPE_FIELDS if re.search(rf"^\s*{k}\s*:", text, re.MULTILINE)], path


def test_a_config_saved_before_the_retirement_loads_when_it_held_the_defaults(tmp_path):
    """A config.json written by an older dfmm lists the retired fields at their defaults: it loads, to the same
    config; one that turned a retired option on cannot be rerun, and says so."""
    from dfmm.config import RETIRED_RECIPE_FIELDS

    cfg = load_config([PARAMS / "demo.yaml"])
    old = cfg.to_dict()
    for bc in (old["visual"], old["text"]):
        for recipe in bc["recipes"].values():
            recipe.update(RETIRED_RECIPE_FIELDS)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    assert load_resolved(path) == cfg
    old["visual"]["recipes"]["improved"]["global_pool"] = "avgmax"
    path.write_text(json.dumps(old))
    with pytest.raises(ConfigError, match=r"visual\.recipes\.improved: 'global_pool' is no longer an option.*6575cbe"):
        load_resolved(path)


def test_compact_improved_recipes_run_three_seeds():
    """The compact targets are means over 3 seeds; the card recipe runs the branch's one."""
    cfg = load_config([PARAMS / "compact.yaml"])
    for bc in (cfg.visual, cfg.text):
        assert bc.seeds == 1 and bc.recipes["improved"].seeds == 3 and bc.recipes["card"].seeds == 0
    assert cfg.visual.recipes["improved"].augment == "flip" and cfg.visual.recipes["card"].augment == "card"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config([tmp_path / "nope.yaml"])
    f = tmp_path / "broken.yaml"
    f.write_text("visual: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml.*not valid YAML"):
        load_config([f])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("visual.epochs")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config([PARAMS / "demo.yaml"], ["study.seed=3"])
    path = cfg.save(tmp_path / "config.json")
    again = load_resolved(path)
    assert again == cfg and again.digest() == cfg.digest()
    assert json.loads(path.read_text())["study"]["seed"] == 3
    assert load_config([PARAMS / "demo.yaml"], ["study.seed=4"]).digest() != cfg.digest()


def test_every_number_in_the_params_has_a_range():
    """A new numeric field cannot skip range validation: each int/float field is in _RANGES or _RECIPE_RANGES."""
    import dataclasses
    import typing

    from dfmm.config import _RANGES, _RECIPE_RANGES, Config, Recipe

    for section in ("study", "data", "visual", "text", "fusion", "video"):
        cls = typing.get_type_hints(Config)[section]
        for f in dataclasses.fields(cls):
            if typing.get_type_hints(cls)[f.name] in (int, float):
                assert (section, f.name) in _RANGES, f"{section}.{f.name} has no range"
    for f in dataclasses.fields(Recipe):
        if typing.get_type_hints(Recipe)[f.name] in (int, float):
            assert f.name in _RECIPE_RANGES, f"recipe field {f.name} has no range"


@pytest.mark.parametrize(
    "override,needle",
    [
        ("visual.epochs=-1", r"\(-p visual\.epochs=-1\): visual\.epochs = -1; expected >= 1"),
        ("visual.eval_batch_size=0", r"visual\.eval_batch_size = 0; expected >= 1"),
        ("visual.recipes.card.lr=0", r"visual\.recipes\.card\.lr = 0\.0; expected > 0"),
        ("text.recipes.improved.warmup_fraction=.nan", r"warmup_fraction = nan; expected a finite number in \[0, 1\]"),
        ("data.max_eval_texts=-1", r"data\.max_eval_texts = -1; expected >= 0 \(0 = all\)"),
        ("generalization.recipe_sweep_items=-1", r"generalization\.recipe_sweep_items = -1; expected >= 0"),
        ("study.name=..", r"study\.name = '\.\.'; expected a plain folder name"),
    ],
)
def test_out_of_range_values_are_refused(override, needle):
    with pytest.raises(ConfigError, match=needle) as e:
        load_config([PARAMS / "demo.yaml"], [override])
    assert str(e.value).startswith(str(PARAMS / "demo.yaml")) and "\n" not in str(e.value)


def test_a_file_with_an_out_of_range_value_is_named(tmp_path):
    f = tmp_path / "short.yaml"
    f.write_text("text:\n  recipes:\n    card:\n      label_smoothing: 1.0\n")
    with pytest.raises(ConfigError, match=r"^\S*short\.yaml: text\.recipes\.card\.label_smoothing = 1\.0; expected"):
        load_config([PARAMS / "compact.yaml", f])
    assert (
        load_config([PARAMS / "demo.yaml"], ["data.max_images=0", "visual.recipes.card.seeds=0"]).data.max_images == 0
    )
