"""dfmm: a reproducible study of multimodal deepfake detection (images, text, video).

Public API (the data card's calls)::

    from dfmm import load_model, classify_image, classify_text, classify_video, classify_multimodal
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["classify_image", "classify_multimodal", "classify_text", "classify_video", "load_model"]


def __getattr__(name: str) -> Any:  # keep `import dfmm` light: torch loads on first use of the API
    if name in __all__:
        from dfmm.serving import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'dfmm' has no attribute {name!r}")
