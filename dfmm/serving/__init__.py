"""Serving: the inference API (``inference``), ``dfmm evaluate`` / ``dfmm score`` (``evaluate``, ``score_files``), explanations (``explain``). Imports no training code."""
