"""Memory stays flat as the data grows (#16 item 7, #17 item 1).

A generated source with the Hub dataset's schema is read whole, in a fresh process, through the path training
takes (``dfmm.data.memory``: load, group split, then ``ImageDataset`` with the evaluation transform and a
``DataLoader`` of 64 for images; every text by index for texts), at two sizes four times apart. The conversion
to the memory-mapped table happens inside the measured run (an empty cache), as on a study's first load.

Bounds: the peak of what the process itself holds (anonymous memory) grows by at most ``FLAT_MB``; the peak
resident memory grows by at most the growth of the memory-mapped file plus ``FLAT_MB`` (mapped pages the loop
touched are resident, but they are the page cache's, shared by every worker and dropped under pressure) and
stays within 1.2 x (#17's target). Measured on a 2-core CPU: images +1 MB anonymous, +20 MB resident (1.02 x, the
mapped file grew 19 MB); texts -8 MB anonymous, +48 MB resident (1.05 x, the file grew 63 MB). The list-based
loaders this replaced grew by 84 MB (images) and 236 MB (texts) of anonymous memory on the same measurements.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from dfmm.data.memory import measure_in_subprocess
from dfmm.data.synthetic import write_hemg_parquet, write_pile_parquet

FLAT_MB = 30.0


def _flat(kind, small, big, n_small, n_big, cache):
    a = measure_in_subprocess(kind, small)
    small_file = max(p.stat().st_size for p in cache.glob("*.arrow"))
    b = measure_in_subprocess(kind, big)
    mapped_growth = (max(p.stat().st_size for p in cache.glob("*.arrow")) - small_file) / 2**20
    figures = json.dumps({"small": a, "big": b, "mapped_growth_mb": round(mapped_growth, 1)})
    print(figures)
    assert (a["items"], b["items"]) == (n_small, n_big), figures
    assert b["peak_anon_mb"] - a["peak_anon_mb"] <= FLAT_MB, figures
    assert b["peak_rss_mb"] - a["peak_rss_mb"] <= mapped_growth + FLAT_MB, figures
    assert b["peak_rss_mb"] <= 1.2 * a["peak_rss_mb"], figures


@pytest.mark.slow  # about 50 s on a 2-core CPU: 20,000 JPEGs written, then 25,000 decoded
def test_reading_20000_images_holds_no_more_than_5000(tmp_path, monkeypatch):
    monkeypatch.setenv("DFMM_CACHE_DIR", str(tmp_path / "cache"))
    big = write_hemg_parquet(tmp_path / "big.parquet", 20_000, size=64)
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(big).slice(0, 5_000), small)
    _flat("images", small, big, 5_000, 20_000, tmp_path / "cache" / "arrow")


@pytest.mark.slow  # 200,000 texts written and read (~13 s)
def test_reading_200000_texts_holds_no_more_than_50000(tmp_path, monkeypatch):
    monkeypatch.setenv("DFMM_CACHE_DIR", str(tmp_path / "cache"))
    big = write_pile_parquet(tmp_path / "big.parquet", 200_000)
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(big).slice(0, 50_000), small)
    _flat("texts", small, big, 50_000, 200_000, tmp_path / "cache" / "arrow")
