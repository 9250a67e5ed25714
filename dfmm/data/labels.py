"""The one source of truth for labels: 0 = real / human, 1 = fake / AI-generated."""

from __future__ import annotations

REAL = 0
FAKE = 1
NAMES = {REAL: "real", FAKE: "fake"}

# Words that mean "real" or "fake" in the datasets we read (folder names, CSV label columns, Hub sources).
_WORDS = {
    "0": REAL,
    "real": REAL,
    "human": REAL,
    "original": REAL,
    "1": FAKE,
    "fake": FAKE,
    "ai": FAKE,
    "deepfake": FAKE,
    "generated": FAKE,
}


def parse_label(value: object) -> int | None:
    """Map 0/1 or a label word to 0/1; None when the value means neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in (REAL, FAKE) else None
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    return None


def hemg_to_internal(label: int) -> int:
    """``Hemg/deepfake-and-real-images`` uses 0 = Fake, 1 = Real; the card flips it to Real = 0, Fake = 1."""
    if label not in (0, 1):
        raise ValueError(f"Hemg label must be 0 (Fake) or 1 (Real), got {label!r}")
    return 1 - label
