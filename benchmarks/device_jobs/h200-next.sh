#!/bin/bash
# For the next one-GPU lease (issue 26), what session 11 (user_path-t525-h200-2026-12-03.md) left unmeasured, three
# calls back to back on one warm machine sharing /tmp/up (carry .whl and .whl25; the levers script installs nothing:
# run the s11 script's wheel lines first, or call it as below):
#   call 1  Llama-2-7B, interleaved repeats against the machine's 10-25 % run-to-run noise:
#           SIDES=engine,compiled,engine2,compiled2,best
#   call 2  CUDA graphs over the compiled layers (never reached step 1 yet: give it the whole call), then lean on 5.25:
#           SIDES=cudagraphs,lean
#   call 3  Llama-3-8B repeats: ARCH=llama3-8b SIDES=engine2,compiled2,lean
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
1) SIDES=engine,compiled,engine2,compiled2,best STEPS=70 WARMUP=10 DEADLINE_S=540 SIDE_S=240 bash $L "$R" ;;
2) SIDES=cudagraphs,lean STEPS=70 WARMUP=10 DEADLINE_S=540 SIDE_S=400 bash $L "$R" ;;
3) ARCH=llama3-8b SIDES=engine2,compiled2,lean STEPS=70 WARMUP=10 DEADLINE_S=540 SIDE_S=220 bash $L "$R" ;;
esac
