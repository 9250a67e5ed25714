"""Training: the one loop (``loop``), the branch trainers, baselines and fusion fitting (``experiments``), speed checks."""
