"""Errors a researcher can act on.

Every failure the study expects (bad params, missing data, unreadable files, foreign checkpoints, an
unreachable Hub) is a :class:`DfmmError` whose message names the file or key; the CLI prints it on one line
and exits with status 2.
"""

from __future__ import annotations


class DfmmError(Exception):
    """Base class: a one-line, actionable message."""

    def __str__(self) -> str:  # keep it to one line whatever the caller passed
        return " ".join(str(self.args[0]).split()) if self.args else self.__class__.__name__


class ConfigError(DfmmError):
    """A params file or override is wrong (unknown key, wrong type, missing file)."""


class DataError(DfmmError):
    """Data cannot be read: missing folder, empty class, bad JSONL line, corrupt image or video."""


class HubUnavailable(DfmmError):
    """The Hugging Face Hub could not be reached for a dataset or a backbone."""


class CheckpointError(DfmmError):
    """A checkpoint is missing, foreign, tampered with, or of the wrong kind."""


class StudyError(DfmmError):
    """A notebook of the study failed."""


def failure(e: BaseException) -> str:
    """One line for an item's error row (``dfmm score``, ``dfmm evaluate``): a dfmm error as it is; anything else
    (a library's failure on an odd input, or a bug) with its type, so that one item never stops a run of thousands.
    """
    if isinstance(e, DfmmError):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
