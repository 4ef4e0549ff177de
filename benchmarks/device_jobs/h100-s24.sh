#!/bin/bash
# An H100 (or H200), issue 26's goals for the default as it is since session 23 (the activation checkpoint inside the
# first layers' compiled graphs, engine.plan.checkpoint_in_graph_layers_for), side by side in one run each:
#   call 1  Llama-2-7B, 70 steps: compiledmf (the default now), the best stack, compiledprev (the default before)
#   call 2  Llama-3-8B, 70 steps: compiledmf, the best stack
#   call 3  Llama-2-7B, 30 steps, LoRA dropout 0: nodrop (eager, the reference), compiled_nd (the default's compiled
#           layers with the lever): the adapter after 30 steps within bf16 noise of eager's (adapters.md)
#   call 4  Llama-2-7B, 70 steps: leancompiledmf (lean's goal: >= 1.0x the best stack within 6.2 GiB; the lever is
#           off in lean by the plan's rule, so this is session 20's lean again), the best stack
#   bash benchmarks/device_jobs/h100-s24.sh CALL $OUT        (SIDES1-4, STEPS, BUDGET_S to fit a short lease)
# Carry .whl (with trl: lean's offloading) and .whl25 (transformers 5.25).
CALL=${1:?call 1, 2, 3 or 4}
OUT=${2:?results directory}
JOB=s24 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-compiledmf,best,compiledprev} STEPS=${STEPS:-70} SIDE_S=200 ;;
2) ARCH=llama3-8b SIDES=${SIDES2:-compiledmf,best} STEPS=${STEPS:-70} SIDE_S=200 ;;
3) ARCH=llama2-7b SIDES=${SIDES3:-nodrop,compiled_nd} STEPS=${STEPS:-30} SIDE_S=200 ;;
4) ARCH=llama2-7b SIDES=${SIDES4:-leancompiledmf,best} STEPS=${STEPS:-70} SIDE_S=200 ;;
esac
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
