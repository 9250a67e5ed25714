"""The study's named choices, declared once: the config's checks, the CLI's ``choices`` and the API read these.

A ``Literal`` type documents the choice where it is used; the tuple beside it is what code checks against.
"""

from __future__ import annotations

from typing import Literal, get_args

Aggregation = Literal["mean", "max", "median", "vote", "confidence"]  # per-frame P(fake) -> one clip score
FaceCrop = Literal["auto", "always", "never"]  # photos: crop to the largest face when it helps / always / never

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
FACE_CROPS: tuple[str, ...] = get_args(FaceCrop)
