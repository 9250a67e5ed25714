"""Would another OpenVINO setting bring the exported text branch to 1.5x PyTorch? A trial for issue 27's text target.

    python benchmarks/text_runtime_settings.py [--model CKPT] [--params PARAMS,...]

Exports the checkpoint's text branch (``dfmm export``) into a temporary folder, then measures texts/s on the same 8
compact test texts (tokenised once, padded to the longest) in a process of its own per setting (a runtime's
threads and a previous export change what runs next in the same process: docs/experiments.md): PyTorch eager;
OpenVINO as ``dfmm`` compiles it (``PERFORMANCE_HINT: LATENCY``, fp32); the same with the input shape fixed to the
batch's; and ``THROUGHPUT`` with 2 streams, the batch split in two halves on an ``AsyncInferQueue``. The speed is
the median of 3 rounds of 3 s after 2 warm-up calls. Prints one JSON object: texts/s and the ratio to PyTorch.

    python benchmarks/text_runtime_settings.py --pairs 5 [--model CKPT] [--export DIR]

measures only PyTorch and OpenVINO as ``dfmm`` compiles it, each in a fresh process, ``--pairs`` times in
alternating order (PyTorch first in even pairs, OpenVINO first in odd ones, so that a drift of the machine's speed
falls on both), and prints the ratio of each pair, their mean and its 95% t-interval: the text target's ratio with
the run-to-run spread of both speeds in it (``benchmarks/serving.py`` runs it for its table). It also measures the
ceiling, in one more fresh process: the batch's floating-point work (``torch.utils.flop_counter`` on PyTorch's
forward pass, GFLOP per text) and the machine's fp32 matrix-multiply rate (PyTorch and NumPy, 4096 x 4096, 3 s
each), so that each runtime's texts/s reads as a share of what the cores can do at best.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = ("torch", "openvino_latency", "openvino_static_shape", "openvino_two_streams")  # "ceiling": see --pairs


def _per_second(fn, n: int, seconds: float = 3.0, rounds: int = 3) -> float:
    fn()
    fn()
    speeds = []
    for _ in range(rounds):
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            calls += 1
        speeds.append(calls * n / (time.perf_counter() - t0))
    return float(np.median(speeds))


def _ceiling(model: object, ids: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """GFLOP per text of the batch (PyTorch's forward pass) and the fp32 GFLOP/s of large matrix products here."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.text.scored(torch.from_numpy(ids), torch.from_numpy(mask))
    out = {"gflop_per_text": counter.get_total_flops() / len(ids) / 1e9}
    n = 4096
    for name, a in (("torch", torch.rand(n, n)), ("numpy", np.random.default_rng(0).random((n, n), np.float32))):
        out[f"sgemm_gflop_per_s_{name}"] = _per_second(lambda a=a: a @ a, 2 * n**3 / 1e9, seconds=3.0, rounds=1)
    return out


def _measure(setting: str, model_path: str, export: str, params: list[str]) -> float | dict[str, float]:
    import itertools

    from dfmm.config import load_config
    from dfmm.data import text_splits
    from dfmm.serving.inference import load_model

    model, _ = load_model(model_path)
    texts = list(itertools.islice(text_splits(load_config(params))["test"].iter_texts(), 8))
    enc = model.tokenizer(
        texts, truncation=True, max_length=model.text_spec.max_length, padding=True, return_tensors="np"
    )
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    if setting == "ceiling":
        return _ceiling(model, ids, mask)
    if setting == "torch":
        import torch

        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.inference_mode():
            return _per_second(lambda: model.text.scored(t_ids, t_mask), len(ids))
    import openvino as ov

    core = ov.Core()
    graph = core.read_model(str(Path(export) / "text.onnx"))
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if setting == "openvino_static_shape":
        graph.reshape({"input_ids": list(ids.shape), "attention_mask": list(ids.shape)})
    if setting == "openvino_two_streams":
        config |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2"}
    compiled = core.compile_model(graph, "CPU", config)
    if setting != "openvino_two_streams":
        return _per_second(lambda: compiled({"input_ids": ids, "attention_mask": mask}), len(ids))
    queue, half = ov.AsyncInferQueue(compiled, 2), len(ids) // 2

    def two_halves() -> None:
        queue.start_async({"input_ids": ids[:half], "attention_mask": mask[:half]})
        queue.start_async({"input_ids": ids[half:], "attention_mask": mask[half:]})
        queue.wait_all()

    return _per_second(two_halves, len(ids))


def _one(setting: str, model: str, params: str, export: str) -> float:
    cmd = [sys.executable, __file__, "--model", model, "--params", params, "--setting", setting, "--export", export]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])[setting]


def paired_ratio(model: str, params: str, export: str, pairs: int) -> dict:
    """OpenVINO / PyTorch texts/s over ``pairs`` pairs of fresh processes, alternating which runs first."""
    from scipy import stats

    speeds: dict[str, list[float]] = {"torch": [], "openvino_latency": []}
    for i in range(pairs):
        order = ("torch", "openvino_latency") if i % 2 == 0 else ("openvino_latency", "torch")
        for setting in order:
            speeds[setting].append(_one(setting, model, params, export))
    ratios = np.array(speeds["openvino_latency"]) / np.array(speeds["torch"])
    mean = float(ratios.mean())
    half = float(stats.t.ppf(0.975, pairs - 1) * ratios.std(ddof=1) / np.sqrt(pairs)) if pairs > 1 else float("nan")
    ceiling = _one("ceiling", model, params, export)
    gflop = ceiling["gflop_per_text"]
    return {
        "pairs": pairs,
        "texts_per_s": {k: [round(v, 1) for v in vs] for k, vs in speeds.items()},
        "ratios": [round(float(r), 3) for r in ratios],
        "ratio_mean": round(mean, 3),
        "ratio_ci": [round(mean - half, 3), round(mean + half, 3)],
        "ceiling": {k: round(v, 3) for k, v in ceiling.items()}
        | {f"gflop_per_s_{k}": round(float(np.median(vs)) * gflop, 1) for k, vs in speeds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/compact/text_branch.pt")
    ap.add_argument("--params", default="params/compact.yaml,params/sources/local.yaml")
    ap.add_argument(
        "--setting", choices=(*SETTINGS, "ceiling"), help=argparse.SUPPRESS
    )  # one measurement, in this process
    ap.add_argument("--export", help="an existing dfmm export folder of --model (default: export it once)")
    ap.add_argument("--pairs", type=int, default=0, help="PyTorch / OpenVINO pairs of fresh processes (0: settings)")
    a = ap.parse_args(argv)
    params = a.params.split(",")
    if a.setting:
        print(json.dumps({a.setting: _measure(a.setting, a.model, a.export, params)}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        export = a.export or str(Path(tmp) / "export")
        if not a.export:
            cli = [sys.executable, "-m", "dfmm.cli"]
            subprocess.run([*cli, "export", "--model", a.model, "--out", export], check=True, capture_output=True)
        if a.pairs:
            print(json.dumps(paired_ratio(a.model, a.params, export, a.pairs)))
            return 0
        speeds = {setting: _one(setting, a.model, a.params, export) for setting in SETTINGS}
    base = speeds["torch"]
    print(json.dumps({k: {"texts_per_s": round(v, 1), "x_torch": round(v / base, 2)} for k, v in speeds.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
