#!/bin/bash
# nvidia-h200, 2026-12-03 (issues 26, CI): the user's path on the transformers users install today. transformers 5.25
# (released after the lever runs, which used the image's 5.17) checkpoints inside each decoder layer's forward and
# brings the `kernels` hub layers; engine.train.compiled_layers now compiles through a layer subclass because of it.
# One short call: the default path and the compiled lever, Llama-2-7B, on 5.25 when its wheels import, else on the
# image's transformers (t525.txt says which).
#   bash benchmarks/device_jobs/h200-2026-12-03-t525.sh $OUT      (carry .whl and .whl25)
R=${1:?results directory}
mkdir -p "$R"
cd "$(dirname "$0")/../.." || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site25 .whl25/*.whl \
    > "$R/t525.txt" 2>&1
if PYTHONPATH=/tmp/site25:$PYTHONPATH python3 -c "import transformers, peft, liger_kernel, bitsandbytes, datasets
from transformers import Trainer; print('transformers', transformers.__version__)" >> "$R/t525.txt" 2>&1; then
    export PYTHONPATH=/tmp/site25:$PYTHONPATH
else
    echo "5.25 did not import: the image's transformers runs" >> "$R/t525.txt"
fi
cat "$R/t525.txt"
SIDES=${SIDES:-engine,compiled} STEPS=${STEPS:-30} WARMUP=${WARMUP:-10} DEADLINE_S=${DEADLINE_S:-200} \
    SIDE_S=${SIDE_S:-140} bash benchmarks/device_jobs/h200-2026-12-03-levers.sh "$R"
