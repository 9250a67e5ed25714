"""Analysis: plots, robustness sweeps, data exploration (statistics live in ``dfmm.metrics``, below every layer)."""
