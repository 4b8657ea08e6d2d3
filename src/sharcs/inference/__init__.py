"""Running a trained model: batched predictions over a dataset (predict) and streamed text lines (stream)."""
