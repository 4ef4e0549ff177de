#!/bin/bash
# nvidia-h200 (or an H100), issue 26, after the mask-free LoRA dropout stopped recompiling for every packed length
# (engine/train/mask_free_dropout.py, pinned on the CPU by tests/test_mask_free_dropout.py): each call measures its
# sides side by side on one warm machine, so that each call's table stands alone.
#   call 1  Llama-2-7B, 70 steps: compiledmf (mask-free dropout), compiled (the default), the best stack
#   call 2  Llama-2-7B, 70 steps: leancompiledmf, leancompiled (lean's memory: the 6.2 GiB goal), compiled_d0
#   call 3  Llama-3-8B, 70 steps: compiledmf, compiled, the best stack
#   bash benchmarks/device_jobs/h200-s20.sh CALL $OUT        (SIDES1-3, STEPS, BUDGET_S to fit a short lease)
# Carry .whl (with trl: lean's offloading) and .whl25 (transformers 5.25). If compiledmf wins (speed and memory, no
# recompiles) flip LEVERS.mask_free_dropout on, as the README's lever bullet says.
CALL=${1:?call 1, 2 or 3}
OUT=${2:?results directory}
JOB=s20 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-compiledmf,compiled,best} STEPS=${STEPS:-70} SIDE_S=200 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-leancompiledmf,leancompiled,compiled_d0} STEPS=${STEPS:-70} SIDE_S=200 ;;
3) ARCH=llama3-8b SIDES=${SIDES3:-compiledmf,compiled,best} STEPS=${STEPS:-70} SIDE_S=200 ;;
esac
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
