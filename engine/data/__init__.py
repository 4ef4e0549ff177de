"""Datasets: reading, format detection, templating, label masking and batching."""
