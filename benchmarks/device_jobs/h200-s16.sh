#!/bin/bash
# nvidia-h200, the lease after session 15 (issue 26): packed rows go through varlen flash attention by default since
# session 15 (engine.plan.attention_for), so `engine`, `compiled`, `lean` and `leancompiled` run it; the `*flex`
# sides run flex attention, the default before. Calls back to back on one warm machine share /tmp/up (models, data,
# every side's run); carry .whl (with trl: lean's offloading) and .whl25.
#   call 1  Llama-3-8B: the best stack and compiled (varlen), 70 steps: the 1.6x goal on the second architecture
#   call 2  Llama-2-7B lean: lean (eager, 8,192 tokens), leancompiled (6,144) and leancompiled8k, 50 steps: lean's
#           goal (1.0x the best stack at <= 6.2 GiB) with varlen; leancompiledflex if the lease allows
#   call 3  Llama-2-7B, LoRA dropout 0, 30 steps: nodrop (eager, varlen: the reference now), compiled_nd and
#           flex_nd: the default's adapter against eager's and flex's (s13's bf16 yardstick: lora_B 12.3-12.7 %)
#   call 4  Llama-2-7B: the best stack, engine (eager, varlen, the default's dropout) and flex, 70 steps: the eager
#           path's rows for presets/speed.yaml, and both ratios beside one best stack
#   (in that order of need: a short lease runs the first ones)
#   bash benchmarks/device_jobs/h200-s16.sh CALL $OUT        (SIDES1-4, STEPS, BUDGET_S to fit a short lease)
CALL=${1:?call 1, 2, 3 or 4}
OUT=${2:?results directory}
JOB=s16 source "$(dirname "$0")/begin.sh"
# a machine kept warm from an earlier call installed the wheels once: add any wheel carried since (trl in s14)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/trl-*.whl 2>/dev/null
DEADLINE_S=$(( ${BUDGET_S:-530} - $(date +%s) + START ))
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1) ARCH=llama3-8b SIDES=${SIDES1:-best,compiled} STEPS=${STEPS:-70} SIDE_S=250 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-lean,leancompiled,leancompiled8k,leancompiledflex} STEPS=${STEPS:-50} SIDE_S=170 ;;
3) ARCH=llama2-7b SIDES=${SIDES3:-nodrop,compiled_nd,flex_nd} SIDE_S=170 ;;
4) ARCH=llama2-7b SIDES=${SIDES4:-best,engine,flex} STEPS=${STEPS:-70} SIDE_S=170 ;;
esac
ARCH=$ARCH SIDES=$SIDES STEPS=${STEPS:-50} WARMUP=10 DEADLINE_S=$DEADLINE_S SIDE_S=${SIDE_S:-200} bash $L "$R/levers"
cp "$R/levers/user_path_all.md" "$OUT/levers.md" 2>/dev/null; cp "$R/levers/adapters.md" "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C /tmp/s16 "call$CALL"
ls -la "$OUT"
