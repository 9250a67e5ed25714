"""Peak memory of reading a whole source through the training data path, measured in a fresh process.

``python -m dfmm.data.memory images PATH`` loads ``PATH`` (any image source), splits it as the study does and
iterates once over every item through ``ImageDataset`` (the evaluation transform) and a ``DataLoader`` (batches of
64); ``texts PATH`` loads a text source, splits it and reads every text by index in batches of 64. It prints one
JSON object (MB, 1 MB = 2**20 bytes):

- ``peak_rss_mb``: the process's peak resident memory while loading and iterating (``VmHWM`` after resetting it
  once the imports are done; without that, the peak of samples taken at every batch);
- ``peak_anon_mb``: the peak of its anonymous memory (``RssAnon``: what the process itself holds, as opposed to
  pages of memory-mapped files, which the kernel can drop and which every process mapping the file shares);
- ``base_rss_mb`` / ``base_anon_mb``: the same after the imports, before the source is opened;
- ``items``: how many items were read; ``seconds``: how long loading and iterating took.

Tests (``tests/test_memory.py``) and ``benchmarks/data_memory.py`` run it on generated sources of two sizes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_MB = 1024  # /proc reports kB


def _status() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process in MB (empty where /proc is missing)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0]) / _MB
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5), so the peak excludes the imports."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_fallback() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _MB  # kB on Linux


class _Peaks:
    """Peaks of VmRSS and RssAnon, sampled by a thread every ``every`` seconds (and at each ``sample()``)."""

    def __init__(self, every: float = 0.002) -> None:
        self.rss = self.anon = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.sample()

    def sample(self) -> None:
        s = _status()
        self.rss = max(self.rss, s.get("VmRSS", 0.0))
        self.anon = max(self.anon, s.get("RssAnon", 0.0))

    def __enter__(self) -> _Peaks:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def measure(kind: str, source: str, image_size: int = 64, batch: int = 64) -> dict[str, Any]:
    """Load ``source``, split it and read every item once (see the module's doc); memory figures in MB."""
    from torch.utils.data import DataLoader

    from dfmm.data.batches import ImageDataset, collate_images
    from dfmm.data.images import load_images
    from dfmm.data.splits import split_by_group
    from dfmm.data.text import load_texts
    from dfmm.data.transforms import image_transform

    base = _status()
    reset = _reset_peak()
    n = 0
    t0 = time.perf_counter()
    with _Peaks() as peaks:
        items: Any = load_images(source) if kind == "images" else load_texts(source)
        split = split_by_group(items.labels, items.groups, 0.15, 0.15, seed=0)
        assert sum(split.sizes().values()) == len(items)
        del split
        if kind == "images":
            ds = ImageDataset(items, image_transform(image_size, (0.5,) * 3, (0.5,) * 3, "none"))
            for out in DataLoader(ds, batch_size=batch, collate_fn=collate_images, num_workers=0):
                n += len(out["labels"]) + len(out["skipped"])
        else:
            for start in range(0, len(items), batch):
                n += sum(len(items.text(i)) > 0 for i in range(start, min(start + batch, len(items))))
    seconds = time.perf_counter() - t0
    end = _status()
    peak_rss = end.get("VmHWM", 0.0) if reset else max(peaks.rss, _rss_fallback())
    return {
        "kind": kind,
        "source": source,
        "items": n,
        "seconds": round(seconds, 2),
        "base_rss_mb": round(base.get("VmRSS", 0.0), 1),
        "base_anon_mb": round(base.get("RssAnon", 0.0), 1),
        "peak_rss_mb": round(peak_rss, 1),
        "peak_anon_mb": round(peaks.anon, 1),
        "end_file_mb": round(end.get("RssFile", 0.0), 1),
        "peak_from": "VmHWM" if reset else "samples",
    }


def measure_in_subprocess(kind: str, source: str | Path, timeout: float = 600, **kw: Any) -> dict[str, Any]:
    """:func:`measure` in a fresh Python process (so nothing this process holds is counted)."""
    args = [sys.executable, "-m", "dfmm.data.memory", kind, str(source)]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m dfmm.data.memory", description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=("images", "texts"))
    ap.add_argument("source")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.kind, a.source, a.image_size, a.batch)))


if __name__ == "__main__":
    main()
