#!/bin/bash
# nvidia-h200, the next lease (issue 26): h200-s18.sh's three calls, unchanged (its header says what each
# measures and why: the mask-free LoRA dropout against the compiled default and no dropout, lean's memory, a
# Llama-3-8B trio), and in call 2, before its sides, benchmarks/saved_tensors.py: the estimate's per-layer activation
# rules on the GPU, never measured there (tests/test_estimate_saved_tensors.py pins them on the CPU): whether o_proj's
# LoRA input is varlen attention's saved output (memory.py's _attention_output_is_o_input says no on a GPU), the
# dropout's cost (0.94 GiB measured on the H200 against ~0.5 estimated) and the backward working memory against the
# measured per-layer backward peak, on Llama-2-7B cut to 4 layers at 4,096 and 8,192 tokens. Meant to take under a
# minute; SAVED_S (90 s) stops it, and the sides' deadline counts from the call's start, so it cannot eat the call.
# Calls back to back on one warm machine share /tmp/up (models, data, every side's run); each call's table covers
# the calls before it on that machine; carry .whl (with trl: lean's offloading) and .whl25.
#   call 1  Llama-2-7B, 70 steps: leancompiled, the best stack, compiled
#   call 2  saved_tensors (results in $OUT/saved_tensors), then Llama-2-7B, 70 steps: compiledmf, compiled_d0,
#           leancompiledmf
#   call 3  Llama-3-8B, 70 steps: the best stack, compiled and compiledmf
#   (in that order of need; a fresh machine between calls 1 and 2 breaks the pairs: run call 1 again first)
#   bash benchmarks/device_jobs/h200-s19.sh CALL $OUT        (SIDES1-3, STEPS, BUDGET_S, SAVED_S to fit a short lease)
# If compiledmf wins (speed and memory) flip LEVERS.mask_free_dropout on, as the README's lever bullet says.
CALL=${1:?call 1, 2 or 3}
OUT=${2:?results directory}
JOB=s19 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-leancompiled,best,compiled} STEPS=${STEPS:-70} SIDE_S=230 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-compiledmf,compiled_d0,leancompiledmf} STEPS=${STEPS:-70} SIDE_S=200 ;;
3) ARCH=llama3-8b SIDES=${SIDES3:-best,compiled,compiledmf} STEPS=${STEPS:-70} SIDE_S=200 ;;
esac
if [ "$CALL" = 2 ]; then
    source benchmarks/device_jobs/lib.sh      # step: under a time limit, logged to $R/saved_tensors.log
    mkdir -p "$OUT/saved_tensors"
    step saved_tensors "${SAVED_S:-90}" python3 benchmarks/saved_tensors.py --arch llama2-7b --out "$OUT/saved_tensors"
    cp "$R/saved_tensors.log" "$OUT/saved_tensors/"
    tail -30 "$R/saved_tensors.log"
fi
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
