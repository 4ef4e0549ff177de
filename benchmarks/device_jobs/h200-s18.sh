#!/bin/bash
# nvidia-h200, the lease after session 18 (issue 26): the mask-free LoRA dropout (LEVERS.mask_free_dropout, built and
# tested on the CPU in session 18, off until measured) against the compiled default, no dropout and the best stack,
# and lean's memory read on a machine whose compile caches hold nothing else. Calls back to back on one warm machine
# share /tmp/up (models, data, every side's run); each call's table covers the calls before it on that machine;
# carry .whl (with trl: lean's offloading) and .whl25.
#   call 1  Llama-2-7B, 70 steps: leancompiled first (session 18 measured 6.28 GiB where session 16 measured 6.10 for
#           the same plan; there it ran after the compiled default of the same model had filled inductor's caches),
#           then the best stack and compiled (the default for runs of 1,000 steps or more)
#   call 2  Llama-2-7B, 70 steps: compiledmf (the default with the mask-free dropout: goals 55 % of the limit and
#           <= 8.6 GiB), compiled_d0 (no dropout: what mask-free should approach) and leancompiledmf (lean's 6.2 GiB)
#   call 3  Llama-3-8B, 70 steps: the best stack, compiled and compiledmf
#   (in that order of need; a fresh machine between calls 1 and 2 breaks the pairs: run call 1 again first)
#   bash benchmarks/device_jobs/h200-s18.sh CALL $OUT        (SIDES1-3, STEPS, BUDGET_S to fit a short lease)
# If compiledmf wins (speed and memory) flip LEVERS.mask_free_dropout on, as the README's lever bullet says.
CALL=${1:?call 1, 2 or 3}
OUT=${2:?results directory}
JOB=s18 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-leancompiled,best,compiled} STEPS=${STEPS:-70} SIDE_S=230 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-compiledmf,compiled_d0,leancompiledmf} STEPS=${STEPS:-70} SIDE_S=200 ;;
3) ARCH=llama3-8b SIDES=${SIDES3:-best,compiled,compiledmf} STEPS=${STEPS:-70} SIDE_S=200 ;;
esac
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
