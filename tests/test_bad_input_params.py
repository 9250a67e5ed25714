"""Hostile params files and ``-p key=value`` overrides (issue #25): each is one ``ConfigError`` line naming the file
or the override, refused before any work starts and in well under a second (an alias bomb included).

The table runs like ``tests/test_bad_input.py``'s: through the CLI, exit status 2 and a single ``dfmm: error: ...``
line on stderr that holds the expected substring, nothing written under ``runs/``; through the API, the exception
itself. A property test then feeds random bytes, random YAML-ish text and random structured configs to
``load_config``: a Config or one short ``DfmmError`` line, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfmm.config import Config, load_config, parse_override
from dfmm.errors import ConfigError, DfmmError

from .test_bad_input import DEMO, Case, Ctx, _run_cli, _train, api, cli

MAX_LINE = 400  # characters of a refusal's stderr line, whatever the input's size


def _bomb(levels: int = 9, width: int = 9) -> str:
    """A billion-laughs flow mapping: ``width ** levels`` items from a few hundred bytes."""
    names = [chr(ord("a") + i) for i in range(levels)]
    rows = [f"{names[0]}: &{names[0]} [{','.join(['lol'] * width)}]"]
    rows += [f"{n}: &{n} [{','.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:], strict=False)]
    return "{" + ", ".join(rows) + "}"


def _bomb_list(levels: int = 9, width: int = 9) -> str:
    """The same as a flow list of anchored lists, e.g. under a recipe's ``lr``."""
    names = [chr(ord("a") + i) for i in range(levels)]
    rows = [f"&{names[0]} [{','.join(['lol'] * width)}]"]
    rows += [f"&{n} [{','.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:], strict=False)]
    return "[" + ", ".join(rows) + "]"


def _bomb_top_level() -> str:
    """The classic shape: anchors as top-level keys, the last one aliased under visual.epochs."""
    names = [chr(ord("a") + i) for i in range(9)]
    lines = [f"{names[0]}: &{names[0]} [{','.join(['lol'] * 9)}]"]
    lines += [f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip(names, names[1:], strict=False)]
    return "\n".join(lines) + f"\nvisual:\n  epochs: *{names[-1]}\n"


def _file(name: str, data: bytes | str) -> Callable[[Ctx], list[str]]:
    """``dfmm train visual demo.yaml NAME``: the second params file is the hostile one."""
    return lambda t: ["train", "visual", DEMO, t.file(name, data), *t.runs()]


def _api_file(name: str, data: bytes | str, *overrides: str) -> Callable[[Ctx], Config]:
    return lambda t: load_config([DEMO, t.file(name, data)], list(overrides))


def _deep(n: int = 5000) -> str:
    return "[" * n + "]" * n


BIG_INT = "9" * 5000
LATIN1 = "study:\n  name: caf\xe9\n".encode("latin-1")

CASES = [
    # ---- 1. alias bombs: refused on the node graph, never expanded nor printed
    cli(
        "bomb-file-visual-epochs",
        _file("bomb.yaml", "visual:\n  epochs: " + _bomb() + "\n"),
        "bomb.yaml line 2: not valid YAML (more than 10,000 values once aliases expand (an alias bomb?))",
    ),
    cli(
        "bomb-file-recipe-lr",
        _file("lr.yaml", "visual:\n  recipes:\n    card:\n      lr: " + _bomb_list() + "\n"),
        "lr.yaml line 4: not valid YAML (more than 10,000 values once aliases expand",
    ),
    cli("bomb-file-top-level-anchors", _file("laughs.yaml", _bomb_top_level()), "laughs.yaml line 5: not valid YAML"),
    cli("bomb-override-epochs", _train("visual.epochs=" + _bomb()), "an alias bomb?"),
    cli("bomb-override-recipe-lr", _train("visual.recipes.card.lr=" + _bomb_list()), "an alias bomb?"),
    cli(
        "bomb-small-is-a-type-error",  # 3 levels expand to 40 values: fine to load, still not an int, printed short
        _file("small.yaml", "visual:\n  epochs: " + _bomb(3) + "\n"),
        "small.yaml: visual.epochs: expected int, got dict {'a': ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol"
        "', ...], ",
    ),
    cli(
        "recursive-alias-file", _file("loop.yaml", "study: &s {notebooks: [*s]}\n"), "loop.yaml line 1: not valid YAML"
    ),
    cli("recursive-alias-override", _train("study.notebooks=&n [*n]"), "found a recursive alias"),
    # ---- 2. YAML syntax errors in an override
    cli(
        "override-unclosed-list",
        _train("visual.epochs=[1"),
        "override 'visual.epochs=[1' line 1: not valid YAML (expected ',' or ']', but got '<stream end>')",
    ),
    cli("override-bad-flow-mapping", _train("x={a: [}"), "override 'x={a: [}' line 1: not valid YAML"),
    cli("override-two-documents", _train("visual.epochs=1\n---\n2"), "not valid YAML (expected a single document"),
    cli("override-undefined-alias", _train("visual.epochs=*nope"), "not valid YAML (found undefined alias 'nope')"),
    cli("override-no-equals", _train("visual.epochs"), "override 'visual.epochs': expected key=value"),
    # ---- 3. bytes, depth and numbers a parser chokes on
    cli("file-latin-1", _file("latin.yaml", LATIN1), "latin.yaml: not valid UTF-8 at byte 18"),
    cli(
        "file-deep-nesting",
        _file("deep.yaml", "visual:\n  epochs: " + _deep() + "\n"),
        "deep.yaml line 2: not valid YAML (nested more than 32 levels deep)",
    ),
    cli(
        "file-deep-block-nesting",
        _file("block.yaml", "".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v\n"),
        "block.yaml line 32: not valid YAML (nested more than 32 levels deep)",
    ),
    cli(
        "file-5000-digit-int",
        _file("big.yaml", "visual:\n  epochs: " + BIG_INT + "\n"),
        "big.yaml line 2: not valid YAML (an integer of 5,000 characters (at most 100))",
    ),
    cli(
        "file-5000-digit-hex",  # base 16 has no str-conversion limit: the error message's repr would have hit it
        _file("hex.yaml", "visual:\n  epochs: 0x" + "f" * 5000 + "\n"),
        "hex.yaml line 2: not valid YAML (an integer of 5,002 characters",
    ),
    cli(
        "file-nul-character",
        _file("nul.yaml", "study:\n  name: a\x00b\n"),
        "nul.yaml: not valid YAML (character #x0000",
    ),
    cli(
        "file-bad-date",
        _file("date.yaml", "study:\n  name: 2024-13-45\n"),
        "date.yaml line 2: not valid YAML (cannot read '2024-13-45' as !!timestamp (month must be in 1..12))",
    ),
    cli("override-empty-int-tag", _train("visual.epochs=!!int"), "not valid YAML (cannot read '' as !!int)"),
    cli("override-bad-bool-tag", _train("visual.linear_probe=!!bool maybe"), "cannot read 'maybe' as !!bool"),
    cli("override-python-tag", _train("visual.epochs=!!python/object:os.system x"), "not valid YAML (could not"),
    cli("file-unhashable-key", _file("key.yaml", "? [a]\n: 1\n"), "key.yaml line 1: not valid YAML"),
    cli("file-tab-indent", _file("tab.yaml", "visual:\n\tepochs: 2\n"), "tab.yaml line 2: not valid YAML"),
    cli("override-deep-nesting", _train("visual.epochs=" + _deep()), "nested more than 32 levels deep"),
    cli("override-5000-digit-int", _train("visual.epochs=" + BIG_INT), "an integer of 5,000 characters"),
    cli("override-deep-key", _train("a" + ".a" * 100 + "=1"), "key nested more than 32 levels deep"),
    cli(
        "override-not-utf8",  # a Latin-1 byte on a UTF-8 command line arrives as a lone surrogate
        _train("study.name=caf\udce9"),
        "override 'study.name=caf\\udce9': not valid UTF-8 at byte 14",
    ),
    cli("override-not-utf8-key", _train("vis\udce9=1"), "override 'vis\\udce9=1': not valid UTF-8 at byte 3"),
    # ---- 4. study.name is a folder name
    cli("name-300-chars-override", _train("study.name=" + "a" * 300), "study.name = 'aaaa"),
    cli(
        "name-300-chars-names-the-override",
        _train("study.name=" + "n" * 300),
        "(-p study.name=nnnnnnnnnn",
    ),
    cli("name-300-chars-file", _file("name.yaml", "study:\n  name: " + "b" * 300 + "\n"), "(got 300 characters)"),
    cli("name-101-chars", _train("study.name=" + "c" * 101), "expected a plain folder name: 1-100 letters"),
    cli("name-with-space", _train("study.name=my run"), "study.name = 'my run'; expected a plain folder name"),
    cli("name-hidden", _train("study.name=.cache"), "study.name = '.cache'; expected a plain folder name"),
    cli("name-dash", _train("study.name=-rf"), "study.name = '-rf'; expected a plain folder name"),
    cli("name-empty", _train("study.name="), "study.name = ''; expected a plain folder name"),
    cli(
        "name-half-megabyte", _file("huge.yaml", "study:\n  name: " + "z" * 500_000 + "\n"), "(got 500,000 characters)"
    ),
    api("name-100-chars-ok", lambda t: load_config([DEMO], ["study.name=" + "d" * 100]), check=lambda c: True),
    api("name-dots-dashes-ok", lambda t: load_config([DEMO], ["study.name=v1.2_run-3"]), check=lambda c: True),
    # ---- 5. an unknown key or wrong type in an override is the override's
    cli("override-unknown-key", _train("visual.epoch=1"), "(-p visual.epoch=1): visual: unknown key 'epoch'"),
    cli("override-unknown-top-level", _train("foo=1"), "(-p foo=1): unknown top-level key 'foo'"),
    cli("override-wrong-type", _train("visual.epochs=three"), "(-p visual.epochs=three): visual.epochs: expected int"),
    cli("override-long-key", _train("k" * 5000 + "=1"), "unknown top-level key 'kkkk"),
    cli("override-bad-choice", _train("fusion.pair_rule=never"), "(-p fusion.pair_rule=never): fusion.pair_rule"),
    # ---- 6. top-level keys read cleanly
    cli(
        "file-unknown-top-level",
        _file("bad.yaml", "foo: 1\n"),
        "bad.yaml: unknown top-level key 'foo' (known: data, fusion, generalization, study, text, video, visual)",
    ),
    cli("file-top-level-typo", _file("typo.yaml", "stdy: {seed: 1}\n"), "typo.yaml: unknown top-level key 'stdy' (did"),
    cli("file-number-key", _file("num.yaml", "1: 2\nvisual: {epochs: 2}\n"), "num.yaml: unknown top-level key '1'"),
    cli("file-section-not-mapping", _file("sec.yaml", "visual: 5\n"), "sec.yaml: visual: expected a mapping, got int"),
    # ---- 7. files that are not a mapping, or not a file
    cli("file-top-level-list", _file("list.yaml", "- visual\n- text\n"), "list.yaml: expected a mapping at the top"),
    cli(
        "file-top-level-scalar", _file("scalar.yaml", "epochs=5\n"), "scalar.yaml: expected a mapping at the top level"
    ),
    cli("file-empty", _file("empty.yaml", b""), "empty.yaml: empty params file"),
    cli("file-comments-only", _file("notes.yaml", "# nothing here\n"), "notes.yaml: empty params file"),
    cli("file-is-a-directory", lambda t: ["train", "visual", DEMO, str(t.tmp), *t.runs()], "is a directory"),
    cli(
        "file-too-large",
        _file("large.yaml", "# " + "x" * (1 << 20) + "\n"),
        "large.yaml: 1,048,579 bytes is too large for a params file",
    ),
    cli(
        "file-name-too-long",
        lambda t: ["train", "visual", DEMO, str(t.tmp / ("p" * 5000)), *t.runs()],
        "cannot read the params file (File name too long)",
    ),
    # ---- the API: the same one line
    api("api-parse-override-bomb", lambda t: parse_override("a=" + _bomb()), "an alias bomb?", raises=ConfigError),
    api("api-parse-override-syntax", lambda t: parse_override("a=[1"), "override 'a=[1' line 1", raises=ConfigError),
    api("api-bomb-file", _api_file("b.yaml", "visual:\n  epochs: " + _bomb() + "\n"), "b.yaml line 2: not valid YAML"),
    api("api-bom-ok", _api_file("bom.yaml", "\ufeffvisual:\n  epochs: 2\n"), check=lambda c: c.visual.epochs == 2),
    api(
        "api-anchors-ok",  # an anchor and a merge key, the way a params file may reuse a recipe
        _api_file(
            "anchors.yaml",
            "visual:\n  recipes:\n    card: &card {lr: 0.001, optimizer: adamw}\n    improved: {<<: *card, lr: 0.01}\n",
        ),
        check=lambda c: c.visual.recipes["improved"].optimizer == "adamw" and c.visual.recipes["improved"].lr == 0.01,
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_params(case: Case, tmp_path, request, monkeypatch, capsys):
    t = Ctx(tmp_path, request, monkeypatch)
    if case.feed == "cli":
        assert case.error is not None  # nothing in this table may start training
        rc = _run_cli(case.make(t))
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert rc == 2, (out, err)
        assert len(lines) == 1 and lines[0].startswith("dfmm: error: "), err[:2000]
        line = lines[0]
        assert case.error in line, line
        assert len(line) < MAX_LINE and ": :" not in line, line
        assert not out
        assert not (tmp_path / "runs").exists()
        return
    if case.error is not None:
        with pytest.raises(case.raises) as e:
            case.make(t)
        msg = str(e.value)
        assert case.error in msg and "\n" not in msg and len(msg) < MAX_LINE, msg
    else:
        assert case.check(case.make(t))


def test_every_case_has_one_expectation():
    ids = [p.values[0].id for p in CASES]
    assert len(ids) == len(set(ids))
    assert all((p.values[0].error is None) != (p.values[0].check is None) for p in CASES)


def test_the_limits_leave_the_shipped_params_alone():
    """Every params file of the project loads, alone and with the sources, under the hostile-input limits."""
    root = Path(DEMO).parent
    for path in sorted(root.rglob("*.yaml")):
        base = [] if path.parent == root else [root / "compact.yaml"]
        assert isinstance(load_config([*base, path]), Config), path


# ------------------------------------------------------------------------------------------- property test
_TOKENS = [
    *"abc:{}[],&*!|>-?#'\"\n\t .0123456789%@`\\",
    "visual",
    "text",
    "study",
    "name",
    "epochs",
    "recipes",
    "card",
    "lr",
    "seed",
    ": ",
    "\n  ",
    "- ",
    "&a ",
    "*a",
    "&b [*a, *a]",
    "<<: ",
    "!!int ",
    "!!binary ",
    "!!set ",
    "!!python/object ",
    "!!str ",
    "0x",
    "0b",
    "1e999",
    ".nan",
    "~",
    "null",
    "yes",
    "2024-13-45",
    "2024-01-01",
    "1:30:00",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "\x00",
    "\x1b[31m",
    "\xe9",
    "\u2028",
    "\ufeff",
    "\U0001f600",
]
_yamlish = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
_KEYS = ["study", "data", "visual", "text", "fusion", "video", "name", "seed", "epochs", "recipes", "card", "lr"]
_KEYS += ["improved", "batch_size", "dropout", "notebooks", "cross_images", "optimizer", "budget", "sources"]
_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.text(max_size=30),
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=8), st.integers()), inner, max_size=4),
    ),
    max_leaves=12,
)
_file_bytes = st.one_of(
    st.binary(max_size=200),
    _yamlish.map(lambda s: s.encode("utf-8", "surrogatepass")),
    _values.map(lambda v: yaml.safe_dump(v, allow_unicode=True).encode("utf-8", "surrogatepass")),
)
_override = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from([*_KEYS, "visual.epochs", "study.name", "visual.recipes.card.lr", ""]), _yamlish).map(
        "=".join
    ),
    st.tuples(st.sampled_from(["visual", "study", "visual.recipes.x", "data.cross_images"]), _values).map(
        lambda kv: f"{kv[0]}={yaml.safe_dump(kv[1], default_flow_style=True, width=10**6)}"
    ),
)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("random-params")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_file_bytes, overrides=st.lists(_override, max_size=2))
def test_any_params_file_or_override_is_a_config_or_one_line(scratch: Path, data: bytes, overrides: list[str]):
    path = scratch / "random.yaml"
    path.write_bytes(data)
    for paths, ovs in (([DEMO, path], []), ([DEMO], overrides), ([DEMO, path], overrides)):
        try:
            cfg = load_config(paths, ovs)
        except DfmmError as e:
            msg = str(e)
            assert "\n" not in msg and 0 < len(msg) < 1000, msg[:2000]
        else:
            assert isinstance(cfg, Config) and _NAME.fullmatch(cfg.study.name)
