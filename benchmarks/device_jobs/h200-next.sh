#!/bin/bash
# For the next one-GPU lease (issue 26), what session 12 (user_path-s12-h200-2026-12-03.md) left unmeasured; three
# calls back to back on one warm machine sharing /tmp/up (carry .whl and .whl25). Each side is `lorapilot train`
# with today's defaults unless named otherwise (compiled = the layers compiled + fused AdamW + trimmed guards).
#   call 1  Llama-3-8B: the best stack, the default of long runs (compiled), of short runs (engine), lean
#   call 2  Llama-2-7B: lean on 5.25, repeats (compiled2, compiledcpp), the engine default with fused AdamW
#   call 3  Llama-2-7B, dropout 0, 30 steps: the adapters (nodrop = eager with fused AdamW; paged_nd = with
#           bitsandbytes' paged AdamW; compiled_nd = compiled layers): adapter_agreement.py against nodrop
#   bash benchmarks/device_jobs/h200-next.sh CALL $OUT
CALL=${1:?call 1, 2 or 3}
R=${2:?results directory}
cd "$(dirname "$0")/../.." || exit 1
if [ ! -f /tmp/site25/.done ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site25 \
        .whl25/*.whl && touch /tmp/site25/.done
fi
export PYTHONPATH=/tmp/site25:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1) ARCH=llama3-8b SIDES=best,compiled,engine,lean STEPS=50 WARMUP=10 DEADLINE_S=540 SIDE_S=170 bash $L "$R" ;;
2) SIDES=lean,compiled2,engine,compiledcpp STEPS=50 WARMUP=10 DEADLINE_S=540 SIDE_S=170 bash $L "$R" ;;
3) SIDES=nodrop,paged_nd,compiled_nd,eager_nd STEPS=30 WARMUP=10 DEADLINE_S=540 SIDE_S=150 bash $L "$R" ;;
esac
