#!/bin/bash
# nvidia-h200, 2026-12-03, session 11 (issue 26): the user's path on transformers 5.25 (what users install today),
# three calls back to back on one warm machine sharing /tmp/up (models, data, every side's run):
#   call 1  Llama-2-7B: default, compiled layers, the docs-style best stack, nodrop (the agreement reference)
#   call 2  Llama-3-8B: default, compiled layers, best stack
#   call 3  Llama-2-7B: the adapter agreement (compiled_nd against nodrop, beside eager_nd and noliger_nd, the two
#           yardsticks of bf16 noise), then CUDA graphs with what time is left
#   bash benchmarks/device_jobs/h200-2026-12-03-s11.sh CALL $OUT      (carry .whl and .whl25)
# At most 8 files come back: the levers script writes 7, this one versions.txt.
CALL=${1:?call 1, 2 or 3}
R=${2:?results directory}
mkdir -p "$R"
cd "$(dirname "$0")/../.." || exit 1
if [ ! -f /tmp/site25/.done ]; then  # a warm machine keeps /tmp: the wheels go in once
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site25 \
        .whl25/*.whl && touch /tmp/site25/.done
fi
export PYTHONPATH=/tmp/site25:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import transformers, peft, liger_kernel, bitsandbytes, datasets, torch
from transformers import Trainer
print('transformers', transformers.__version__, 'torch', torch.__version__, 'peft', peft.__version__,
      'bitsandbytes', bitsandbytes.__version__)" > "$R/versions.txt" 2>&1 || { cat "$R/versions.txt"; exit 1; }
cat "$R/versions.txt"
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1) SIDES=engine,compiled,best,nodrop STEPS=70 WARMUP=10 DEADLINE_S=${DEADLINE_S:-530} SIDE_S=200 bash $L "$R" ;;
2) ARCH=llama3-8b SIDES=engine,compiled,best STEPS=70 WARMUP=10 DEADLINE_S=${DEADLINE_S:-520} SIDE_S=200 \
       bash $L "$R" ;;
3) SIDES=compiled_nd,noliger_nd,eager_nd,cudagraphs STEPS=70 WARMUP=10 DEADLINE_S=${DEADLINE_S:-500} SIDE_S=240 \
       bash $L "$R" ;;
esac
