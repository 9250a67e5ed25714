"""The study: the runner (papermill + nbconvert), what a notebook sees, ``metrics.json`` sections, targets, the report and its templates."""
