#!/bin/bash
# nvidia-h200, the lease after session 16 (issue 26): the pairs session 16 could not finish, each side by side on
# one machine. Calls back to back on one warm machine share /tmp/up (models, data, every side's run), and each
# call's table covers the calls before it on that machine; carry .whl (with trl: lean's offloading) and .whl25.
#   call 1  Llama-2-7B: the best stack and compiled (the default for runs of 1,000 steps or more), 70 steps
#   call 2  Llama-2-7B: leancompiled (lean's long-run plan, 6,144 tokens) and compiledoff (the compiled default with
#           the first 8 decoder layers' inputs offloaded: LEVERS.offload_layers), 70 steps: lean's goal beside call 1's
#           best stack; the compiled default's memory goal (its peak <= eager's 8.6 GiB at 8,786 tokens) at call 1's
#           compiled speed on the same machine
#   call 3  Llama-2-7B, LoRA dropout 0, 30 steps: nodrop (eager, varlen) and compiled_nd: the default's adapter
#           against eager's (s13's bf16 yardstick: lora_B 12.3-12.7 %)
#   call 4  Llama-3-8B: the best stack and compiled again, 70 steps (session 16: 1.65x on one pair)
#   call 5  Llama-2-7B: engine (eager, varlen, the default's dropout: the packed rows of presets/speed.yaml), 70
#           steps, beside call 1's best stack
#   future call (not in the case below): Llama-2-7B, SIDES=compiled,compiledmf,compiled_d0 70 steps: the mask-free
#           LoRA dropout (LEVERS.mask_free_dropout, off until measured) against the default and against no dropout
#   (in that order of need: a short lease runs the first ones; a fresh machine between calls 1 and 2 breaks the
#   pairs: then run call 1 again on it before call 2)
#   bash benchmarks/device_jobs/h200-s17.sh CALL $OUT        (SIDES1-5, STEPS, BUDGET_S to fit a short lease)
CALL=${1:?call 1, 2, 3, 4 or 5}
OUT=${2:?results directory}
JOB=s17 source "$(dirname "$0")/begin.sh"
# a machine kept warm from an earlier call installed the wheels once: add any wheel carried since (trl in s14)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/trl-*.whl 2>/dev/null
DEADLINE_S=$(( ${BUDGET_S:-530} - $(date +%s) + START ))
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-best,compiled} STEPS=${STEPS:-70} SIDE_S=250 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-leancompiled,compiledoff} STEPS=${STEPS:-70} SIDE_S=250 ;;
3) ARCH=llama2-7b SIDES=${SIDES3:-nodrop,compiled_nd} SIDE_S=200 ;;
4) ARCH=llama3-8b SIDES=${SIDES4:-best,compiled} STEPS=${STEPS:-70} SIDE_S=250 ;;
5) ARCH=llama2-7b SIDES=${SIDES5:-engine} STEPS=${STEPS:-70} SIDE_S=250 ;;
esac
ARCH=$ARCH SIDES=$SIDES STEPS=${STEPS:-50} WARMUP=10 DEADLINE_S=$DEADLINE_S SIDE_S=${SIDE_S:-200} bash $L "$R/levers"
cp "$R/levers/user_path_all.md" "$OUT/levers.md" 2>/dev/null; cp "$R/levers/adapters.md" "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C /tmp/s17 "call$CALL"
ls -la "$OUT"
