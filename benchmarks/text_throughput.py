"""Text training throughput: length-bucketed, dynamically padded batches vs fixed padding to 512.

Same model, batch, optimiser and device, in one run, on texts drawn from the real length distribution of
L2R; prints samples/s and real (unpadded) tokens/s of the project's loop (`dfmm.train.fit`) for each batching and the ratio (target >= 3x).

    CPU:  python benchmarks/text_throughput.py --texts ../shared/data/text/l2r_rewrites/data.jsonl --n 160
    GPU:  python benchmarks/text_throughput.py --texts FILE --n 4096 --batch 16    # bf16 on CUDA
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from torch.utils.data import DataLoader

from dfmm.config import Recipe
from dfmm.data.batches import LengthBucketSampler, ShuffledBatchSampler, TokenizedTexts
from dfmm.data.text import load_texts
from dfmm.models import TextBranch
from dfmm.train import fit, make_accelerator
from dfmm.weights import create_text_encoder


def run(loader, model, val) -> float:
    """One epoch of the project's training loop (``dfmm.train.fit``); samples/s of the training part."""
    result = fit(
        model, loader, val, Recipe(optimizer="adamw", lr=2e-5, weight_decay=0.01), 1, accelerator=make_accelerator()
    )
    return result.history[0]["train_samples_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", required=True)
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--encoder", default="package:all-MiniLM-L6-v2")
    ap.add_argument("--max-length", type=int, default=512)
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    texts = load_texts(a.texts)
    texts = texts.subset(np.random.default_rng(0).permutation(len(texts))[: a.n])
    encoder, tokenizer, info = create_text_encoder(a.encoder)
    tokens = TokenizedTexts(texts, tokenizer, a.max_length)
    lengths = np.array(tokens.lengths)

    def fresh():
        torch.manual_seed(0)
        enc, _, _ = create_text_encoder(a.encoder)
        return TextBranch(enc)

    loaders = {
        "fixed_512": DataLoader(tokens, batch_sampler=ShuffledBatchSampler(len(tokens), a.batch, 0),
                                collate_fn=lambda b: tokens.collate(b, pad_to=a.max_length)),
        "dynamic_random": DataLoader(tokens, batch_sampler=ShuffledBatchSampler(len(tokens), a.batch, 0), collate_fn=tokens.collate),
        "ours_bucketed": DataLoader(tokens, batch_sampler=LengthBucketSampler(tokens.lengths, a.batch, 0), collate_fn=tokens.collate),
    }  # fmt: skip
    val = DataLoader(
        tokens, batch_sampler=ShuffledBatchSampler(a.batch, a.batch, 0, shuffle=False), collate_fn=tokens.collate
    )
    run(
        DataLoader(tokens, batch_sampler=ShuffledBatchSampler(a.batch * 2, a.batch, 0), collate_fn=tokens.collate),
        fresh(),
        val,
    )
    mean_tokens = float(lengths.mean())
    out = {"device": torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)",
           "encoder": info.spec, "n": a.n, "batch": a.batch, "median_tokens": float(np.median(lengths)),
           "p90_tokens": float(np.percentile(lengths, 90)), "cut_at_max": tokens.truncated()}  # fmt: skip
    for name, loader in loaders.items():
        sps = run(loader, fresh(), val)
        out[f"{name}_samples_s"] = round(sps, 2)
        out[f"{name}_real_tokens_s"] = round(sps * mean_tokens, 1)
    out["ratio_ours_vs_fixed"] = round(out["ours_bucketed_samples_s"] / out["fixed_512_samples_s"], 2)
    out["ratio_dynamic_random_vs_fixed"] = round(out["dynamic_random_samples_s"] / out["fixed_512_samples_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
