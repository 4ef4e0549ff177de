"""What the screens show, with no widget code: read from a run directory or a helper process, tested directly."""
