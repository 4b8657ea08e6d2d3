"""Measuring a model honestly: evaluation (metrics, route shares, FLOPs), bench (latency and throughput
side by side with the Hugging Face model), curve (accuracy against cost), the same for run folders
(run_dirs)."""
