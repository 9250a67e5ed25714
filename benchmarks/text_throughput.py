"""Text training throughput: length-bucketed, dynamically padded batches vs fixed padding to 512.

Same model, batch, optimiser and device, in one run, on texts drawn from the real length distribution of
L2R; prints samples/s and real (unpadded) tokens/s of the project's loop (``dfmm.training.loop.fit``) for each batching
and the ratio (target >= 3x). The measurement is ``dfmm.training.speed.text_loop_ratio`` (notebook 03 runs a short one).

    CPU:  python benchmarks/text_throughput.py --texts ../shared/data/text/l2r_rewrites/data.jsonl --n 160
    GPU:  python benchmarks/text_throughput.py --texts FILE --n 4096 --batch 16    # bf16 on CUDA
"""

from __future__ import annotations

import argparse
import json

import torch

from dfmm.data.text import load_texts
from dfmm.models import TextBranch
from dfmm.models.weights import create_text_encoder
from dfmm.training.speed import text_loop_ratio


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", required=True)
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--encoder", default="package:all-MiniLM-L6-v2")
    ap.add_argument("--max-length", type=int, default=512)
    a = ap.parse_args()

    def build():
        torch.manual_seed(0)
        enc, tokenizer, _ = create_text_encoder(a.encoder)
        return TextBranch(enc), tokenizer

    out = text_loop_ratio(load_texts(a.texts), build, n=a.n, batch=a.batch, max_length=a.max_length)
    print(json.dumps({"encoder": a.encoder, **out}))


if __name__ == "__main__":
    main()
