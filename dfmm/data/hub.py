"""Reading the card's datasets from the Hugging Face Hub, with a one-line error when it cannot be reached."""

from __future__ import annotations

from typing import Any

from dfmm.errors import HubUnavailable

OFFLINE_HINT = "run offline with params/sources/local.yaml, or point data.images / data.texts at local files"


def load_hub_dataset(name: str, split: str) -> Any:
    """Download ``name`` (a Hub dataset id) and return its ``split`` as a ``datasets.Dataset``.

    Its ``data`` is the Arrow table of the ``datasets`` cache, memory-mapped: callers read it by row (an image
    column stays undecoded ``{bytes, path}``, so Hub, parquet and folder sources share one decoder and its error
    handling) and never load the whole split into Python objects.
    """
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
        if ds._indices is not None:  # a selection over the cache files: write it out so rows are table rows
            ds = ds.flatten_indices()
        return ds
    except Exception as e:  # noqa: BLE001 - datasets/huggingface_hub raise many kinds for "offline"
        reason = " ".join(str(e).split())[:200]
        raise HubUnavailable(
            f"could not load dataset '{name}' (split '{split}') from the Hugging Face Hub: {reason} — {OFFLINE_HINT}"
        ) from None
