"""Reading the card's datasets from the Hugging Face Hub, with a one-line error when it cannot be reached."""

from __future__ import annotations

from typing import Any

from dfmm.errors import HubUnavailable

OFFLINE_HINT = "run offline with params/sources/local.yaml, or point data.images / data.texts at local files"


def load_hub_table(name: str, split: str, image_column: str | None = None) -> Any:
    """Download ``name`` (a Hub dataset id) and return its ``split`` as a pyarrow table.

    Image columns are read undecoded (``{bytes, path}``) so that Hub, parquet and folder sources share one
    decoder and its error handling.
    """
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
        if image_column and image_column in ds.column_names:
            ds = ds.cast_column(image_column, datasets.Image(decode=False))
        return ds.data.table if hasattr(ds.data, "table") else ds.with_format("arrow")[:]
    except Exception as e:  # noqa: BLE001 - datasets/huggingface_hub raise many kinds for "offline"
        reason = " ".join(str(e).split())[:200]
        raise HubUnavailable(
            f"could not load dataset '{name}' (split '{split}') from the Hugging Face Hub: {reason} — {OFFLINE_HINT}"
        ) from None
