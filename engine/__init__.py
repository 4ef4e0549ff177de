"""lorapilot's engine: everything that is not UI.

Importing this package is cheap: heavy libraries (torch, transformers, peft,
bitsandbytes, datasets) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
