"""Datasets: sources (download + verify), prepared tensors, the in-memory batched loader."""
