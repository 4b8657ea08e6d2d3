"""Training: the declared options (arguments, options), the method-agnostic loop (trainer) and its hooks,
checkpoints, multi-process training (distributed), and a whole `sharcs train` run (build, run)."""
