"""The methods: one registry (registry), loading any saved method (load), SHARCS and its variants (sharcs/),
and the baselines DynaBERT-style width (dynabert) and early exit, DeeBERT and PABEE (early_exit)."""
