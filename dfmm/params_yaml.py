"""Reading params files and ``-p`` overrides safely: YAML through a loader with limits, and messages that quote
at most ~200 characters of any value.

A hostile or broken params file (an alias bomb, 5,000 levels of nesting, a 5,000-digit integer, a Latin-1 byte, a
folder in its place) is refused here in milliseconds with one ``ConfigError`` line naming the file or the override,
before ``dfmm.config`` types and checks what it holds.
"""

from __future__ import annotations

import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

from dfmm.errors import ConfigError

SHOW_LIMIT = 200  # characters of a value (or key, or override) an error message prints at most

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = SHOW_LIMIT, SHOW_LIMIT, 60


def _show(value: Any, limit: int = SHOW_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters: a value built from a YAML alias bomb, a 5,000-digit integer or a
    megabyte string cannot blow up (or hang) an error message."""
    try:
        text = _REPR.repr(value)
    except (ValueError, TypeError, RecursionError):  # e.g. an int past the str-conversion limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: Any, limit: int = SHOW_LIMIT) -> str:
    """A user-supplied string (a key, an override) as printed in a message: non-printable characters and lone
    surrogates escaped, at most ``limit`` characters."""
    text = str(text)
    out = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[: limit + 1])
    return out if len(out) <= limit else out[: limit - 3] + "..."


MAX_PARAMS_BYTES = 1 << 20
MAX_NODES = 10_000  # YAML nodes once every alias is expanded (a billion-laughs file is 10^9 from 700 bytes)
MAX_DEPTH = 32  # levels of nesting, aliases expanded (Config nests 4: visual.recipes.card.lr)
MAX_INT_CHARS = 100  # a YAML integer's text (Python refuses to convert past 4,300 digits; no parameter needs 100)


class _Refused(yaml.MarkedYAMLError):
    """A document the params loader will not build (too deep, too big once aliases expand, recursive)."""


class _ParamsLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with limits: nesting depth, expanded size (alias bombs), recursive aliases, integer length.

    PyYAML builds an aliased node once and shares it, so loading a billion-laughs document is fast; the harm comes
    later, from whatever walks or prints the expanded value. The composed node graph is measured here, each node
    once, and refused past ``MAX_NODES`` / ``MAX_DEPTH``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        _measure(node)
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """PyYAML's scalar constructors trust the tag: ``!!int ''`` is an IndexError, ``!!bool x`` a KeyError,
        ``!!timestamp 2024-13-45`` a ValueError. Each is a value its tag cannot build, at that node."""
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            value = _show(node.value, 60) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            detail = f" ({_clip(e, 80)})" if isinstance(e, ValueError) else ""
            raise _Refused(None, None, f"cannot read {value} as {_clip(tag, 60)}{detail}", node.start_mark) from None


def _measure(root: Any) -> None:
    """Refuse a node graph whose expansion is over ``MAX_NODES`` nodes or ``MAX_DEPTH`` levels, or is infinite."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)
    active: set[int] = set()

    def walk(node: Any, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in done:
            size, height = done[key]
        elif key in active:
            raise _Refused(None, None, "found a recursive alias (a value that contains itself)", node.start_mark)
        else:
            if depth > MAX_DEPTH:
                raise _Refused(
                    None, None, f"nested more than {MAX_DEPTH} levels deep once aliases expand", node.start_mark
                )
            active.add(key)
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            else:
                children = []
            size, height = 1, 0
            for child in children:
                s, h = walk(child, depth + 1)
                size, height = size + s, max(height, h + 1)
                if size > MAX_NODES:
                    break
            active.discard(key)
            done[key] = (size, height)
        if depth + height > MAX_DEPTH:
            raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep once aliases expand", node.start_mark)
        if size > MAX_NODES:
            raise _Refused(
                None, None, f"more than {MAX_NODES:,} values once aliases expand (an alias bomb?)", node.start_mark
            )
        return size, height

    walk(root, 0)


def _construct_int(loader: yaml.SafeLoader, node: Any) -> int:
    text = loader.construct_scalar(node)
    if len(text) > MAX_INT_CHARS:
        raise _Refused(None, None, f"an integer of {len(text):,} characters (at most {MAX_INT_CHARS})", node.start_mark)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_ParamsLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _load_yaml(text: str, name: str) -> Any:
    """One YAML document through :class:`_ParamsLoader`; any failure is one ``ConfigError`` line naming ``name``."""
    try:
        return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f" line {mark.line + 1}" if mark else ""
        problem = e.problem or e.context or type(e).__name__
        if e.context and problem.startswith("but "):  # "expected a single document in the stream, but found ..."
            problem = f"{e.context}, {problem}"
        raise ConfigError(f"{name}{line}: not valid YAML ({_clip(problem)})") from None
    except yaml.reader.ReaderError as e:
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else _show(e.character)
        raise ConfigError(f"{name}: not valid YAML (character {char} at position {e.position}: {e.reason})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: not valid YAML ({_clip(e)})") from None
    except (ValueError, OverflowError, RecursionError) as e:  # e.g. a timestamp 2024-13-45
        raise ConfigError(f"{name}: not valid YAML ({_clip(e)})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    name = _clip(path, 300)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL byte in the path
        raise ConfigError(f"params file not found: {name}") from None
    except OSError as e:  # a name too long, a folder we may not enter
        raise ConfigError(f"{name}: cannot read the params file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{name}: is a directory, expected a params file (.yaml)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{name}: not a regular file, expected a params file (.yaml)")
    if st.st_size > MAX_PARAMS_BYTES:
        raise ConfigError(f"{name}: {st.st_size:,} bytes is too large for a params file (at most {MAX_PARAMS_BYTES:,})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{name}: cannot read the params file ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not valid UTF-8 at byte {e.start}") from None
    data = _load_yaml(text.removeprefix("\ufeff"), name)
    if data is None:
        raise ConfigError(f"{name}: empty params file; expected a mapping, e.g. 'visual: {{epochs: 5}}'")
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping at the top level, got {type(data).__name__} {_show(data, 60)}")
    return data
