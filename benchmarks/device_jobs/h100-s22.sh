#!/bin/bash
# An H100 (or H200), issue 26's last unmet goal: 55 % of the limit on Llama-2-7B (~10,800 tok/s; the default measured
# 10,659-10,686). Session 22's first call (user_path-s22-h100-2026-12-06.md) measured LEVERS.checkpoint_in_graph at
# 11,801 tok/s (60 %) but 24.2 GiB against 8.5: graph_dequant's own checkpoint around each NF4 dequantise, nested in
# the layer's, had the partitioner save every 16-bit weight (engine/train/layer_checkpoint.py). With no nested
# checkpoint inside the layer's:
#   call 1  Llama-2-7B, 70 steps: compiledck, compiledmf (the default), then compiledck_mem (MEM_STEPS steps under
#           the CUDA allocation recorder: memory_peak.py names what is alive at its peak, ARCH-SIDE.mem.md)
#   call 2  Llama-3-8B, 70 steps: compiledck, compiledmf
#   call 3  Llama-2-7B, 70 steps: compiledck7k, compiledck6k, compiledmf: the lever with smaller micro-batches (its
#           backward peak scales with their tokens): within the default's 8.5 GiB, and still faster?
#   bash benchmarks/device_jobs/h100-s22.sh CALL $OUT        (SIDES1-2, STEPS, BUDGET_S to fit a short lease)
# If compiledck is faster than compiledmf with no recompiles, no "eagerly" event in its train.log and a peak no higher
# than compiledmf's (+0.1 GiB): flip LEVERS.checkpoint_in_graph on (engine/train/speed.py) and record it.
# Carry .whl (with trl) and .whl25 (transformers 5.25).
CALL=${1:?call 1, 2 or 3}
OUT=${2:?results directory}
JOB=s22 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-compiledck,compiledmf,compiledck_mem} STEPS=${STEPS:-70} SIDE_S=200 ;;
2) ARCH=llama3-8b SIDES=${SIDES2:-compiledck,compiledmf} STEPS=${STEPS:-70} SIDE_S=200 ;;
3) ARCH=llama2-7b SIDES=${SIDES3:-compiledck7k,compiledck6k,compiledmf} STEPS=${STEPS:-70} SIDE_S=200 ;;
esac
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
