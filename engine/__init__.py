"""lorapilot's engine: everything that is not UI.

Importing this package is cheap: heavy libraries (torch, transformers, peft,
bitsandbytes, datasets) are imported inside the functions that need them.
"""

import logging

__version__ = "0.1.0"

# On CPUs with AVX512-BF16, importing bitsandbytes 0.50 tries to fetch a CPU kernel from the Hugging Face hub
# and, without the optional `kernels` package or a network, logs "Failed to load CPU gemm_4bit_forward ...
# pip install kernels" as the first line of every CPU run's train.log. Its fallback is the path every other
# CPU takes, so there is nothing for the user to do.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
