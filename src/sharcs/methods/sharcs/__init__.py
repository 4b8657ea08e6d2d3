"""SHARCS (docs/method.md): its config, router, width-sliced model, training recipes, hardness labels,
held-out calibration to a FLOPs budget, and the `--method` presets built on it."""
