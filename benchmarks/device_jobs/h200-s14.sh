#!/bin/bash
# nvidia-h200, the lease after session 13 (issue 26): what user_path-s13-h200-2026-12-04.md left open. Calls back to
# back on one warm machine share /tmp/up (models, data, every side's run); carry .whl and .whl25.
#   call 1  Llama-3-8B: the best stack and compiled (the default of long runs: weights dequantised in the graph
#           since session 13), 70 steps (60 steady, as issue 26 asks): Llama-3-8B's 1.6x
#   call 2  Llama-2-7B, 20 steps each with the trainer's CUDA allocations recorded: compiled_mem and
#           compiledbnb_mem; benchmarks/memory_peak.py names what is alive at each peak (where the in-graph
#           dequantise's +0.30 GiB sits). The .mem.md files come back in call2.tgz (levers/up.tgz)
#   call 3  Llama-2-7B: leancgd4k, leancgd6k (lean + compiled at 4,096 / 6,144 tokens per micro-batch: lean's
#           6.2 GiB goal), compiledmax (max-autotune: the dequantise fused into the matmul as a prologue?)
#   call 4  Llama-2-7B: the best stack and compiled again, 70 steps: a second pair against the noise, 60 steady
#   (in that order of need: a short lease runs the first ones)
#   bash benchmarks/device_jobs/h200-s14.sh CALL $OUT        (SIDES1-4, STEPS, BUDGET_S to fit a short lease)
CALL=${1:?call 1, 2, 3 or 4}
OUT=${2:?results directory}
JOB=s14 source "$(dirname "$0")/begin.sh"
DEADLINE_S=$(( ${BUDGET_S:-530} - $(date +%s) + START ))
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1) ARCH=llama3-8b SIDES=${SIDES1:-best,compiled} STEPS=${STEPS:-70} SIDE_S=240 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-compiled_mem,compiledbnb_mem} SIDE_S=260 ;;  # + the snapshot's dump
3) ARCH=llama2-7b SIDES=${SIDES3:-leancgd4k,leancgd6k,compiledmax} ;;
4) ARCH=llama2-7b SIDES=${SIDES4:-best,compiled} STEPS=${STEPS:-70} SIDE_S=240 ;;
esac
ARCH=$ARCH SIDES=$SIDES STEPS=${STEPS:-50} WARMUP=10 DEADLINE_S=$DEADLINE_S SIDE_S=${SIDE_S:-200} bash $L "$R/levers"
cp "$R/levers/user_path_all.md" "$OUT/levers.md" 2>/dev/null; cp "$R/levers/adapters.md" "$OUT/" 2>/dev/null
cp /tmp/up/*.mem.md "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C /tmp/s14 "call$CALL"
ls -la "$OUT"
