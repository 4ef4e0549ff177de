#!/bin/bash
# An H100 (or H200), issue 26's last unmet goal: 55 % of the limit on Llama-2-7B (~10,800 tok/s) at no more memory
# than the default's 8.5 GiB. Session 22: LEVERS.checkpoint_in_graph in every layer 60 % at 9.7 GiB; session 23's
# first call (h100-s22.sh 3): with smaller micro-batches to fit, slower than the default (more micro-batches a step).
# Now the lever in the first layers only (engine.plan.checkpoint_in_graph_layers_for: 10 of Llama-2-7B's 32, 4 of
# Llama-3-8B's), whose backward runs once the later layers' inputs are freed:
#   call 1  Llama-2-7B, 70 steps: compiledmf (the default), compiledckfit
#   call 2  Llama-3-8B, 70 steps: compiledmf, compiledckfit
#   bash benchmarks/device_jobs/h100-s23.sh CALL $OUT        (SIDES1-2, STEPS, BUDGET_S to fit a short lease)
# If compiledckfit is faster than compiledmf with no recompiles, no "eagerly" event in its train.log and a peak no
# higher than compiledmf's (+0.05 GiB): switch LEVERS.checkpoint_in_graph on (engine/train/speed.py) and record it.
# Carry .whl (with trl) and .whl25 (transformers 5.25).
CALL=${1:?call 1 or 2}
OUT=${2:?results directory}
JOB=s23 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-compiledmf,compiledckfit} STEPS=${STEPS:-70} SIDE_S=240 ;;
2) ARCH=llama3-8b SIDES=${SIDES2:-compiledmf,compiledckfit} STEPS=${STEPS:-70} SIDE_S=240 ;;
esac
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
