"""Latency of the inference API on this machine, warm: p50/p90 over repeated calls.

    python benchmarks/inference_latency.py --model runs/compact/multimodal_ensemble.pt \
        --image ../shared/data/faces/dfdc/real/aabqcugcpc.jpg --video ../shared/data/videos/fake/004_982.mp4

Targets on a 2-core CPU: classify_image p50 <= 60 ms (<= 250 ms with return_gradcam=True), classify_text
p50 <= 40 ms for a 128-token text, classify_video with 32 frames of a 720p clip <= 4 s with face crops (the
default: decode, one batched MTCNN pass, the model on the crops) and <= 3 s on whole frames (``face_crop=False``);
GradCAM alone for one 224 px image < 150 ms, timed beside the grad-cam package's plain use (``gradcam_one_image``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from dfmm.serving.inference import classify_image, classify_text, classify_video, load_model


def timed(fn, repeats: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.median(ms)), 1), "p90_ms": round(float(np.percentile(ms, 90)), 1), "n": repeats}


def text_of_tokens(tokenizer, n_tokens: int) -> str:
    words = ("the detector reads this sentence and decides whether a person or a model wrote it " * 40).split()
    text = ""
    for k in range(1, len(words)):
        text = " ".join(words[:k])
        if len(tokenizer(text)["input_ids"]) >= n_tokens:
            break
    return text


def gradcam_vs_plain(visual: torch.nn.Module, repeats: int, size: int = 224) -> dict:
    """GradCAM on one image: our explainer (graph cut at the CAM layer, frozen weights) vs the grad-cam package
    used as its README shows (full backward through every weight), same model, same target, same run."""
    from pytorch_grad_cam import GradCAM

    from dfmm.serving.explain import GradCamExplainer, LogitTarget

    x = torch.randn(1, 3, size, size)
    with GradCamExplainer(visual) as ours:
        a = timed(lambda: ours(x, "fake"), repeats)
    plain = GradCAM(model=visual.eval(), target_layers=[visual.gradcam_layer()])
    b = timed(lambda: plain(input_tensor=x, targets=[LogitTarget(1.0)]), repeats)
    plain.activations_and_grads.release()
    return {"ours": a, "plain_grad_cam": b, "plain_over_ours_p50": round(b["p50_ms"] / a["p50_ms"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--video", default="")
    ap.add_argument("--repeats", type=int, default=30)
    a = ap.parse_args()
    model, _ = load_model(a.model)
    out: dict = {"threads": torch.get_num_threads(), "model": a.model}
    if model.visual is not None:
        # first: classify_image(return_gradcam=True) leaves the model's own explainer (and its hooks) attached
        out["gradcam_one_image"] = gradcam_vs_plain(model.visual, a.repeats)
        out["classify_image"] = timed(lambda: classify_image(model, a.image), a.repeats)
        out["classify_image_gradcam"] = timed(lambda: classify_image(model, a.image, return_gradcam=True), a.repeats)
    if model.text is not None:
        text = text_of_tokens(model.tokenizer, 128)
        out["text_tokens"] = len(model.tokenizer(text)["input_ids"])
        out["classify_text"] = timed(lambda: classify_text(model, text), a.repeats)
    if a.video and model.visual is not None:
        r = classify_video(model, a.video, num_frames=32)
        out["video"] = {k: r["video"][k] for k in ("width", "height", "duration_s", "frames")}
        out["classify_video_32_face_crops"] = timed(lambda: classify_video(model, a.video, num_frames=32), 5, warmup=1)
        out["classify_video_32_face_crops_breakdown_ms"] = r["timings_ms"]
        out["frames_with_face"] = r["frames_with_face"]
        whole = lambda: classify_video(model, a.video, num_frames=32, face_crop=False)  # noqa: E731
        out["classify_video_32_whole_frames"] = timed(whole, 5, warmup=1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
