#!/bin/bash
# nvidia-h200 (or an H100), issue 26's last unmet goal: 55 % of the limit on Llama-2-7B (~10,800 tok/s). Session 20
# measured the compiled default with the mask-free LoRA dropout at 10,495 tok/s and with dropout 0 at 10,904
# (user_path-s20-h100-2026-12-06.md): the ~4 % is most likely the mask's hash, integer work in every element of
# every adapter input, 3 times a step. LEVERS.mask_hash32 (off) hashes the same masks in int32 words instead of
# int64: in the sm_90 SASS of inductor's kernel 24 instructions an element against 31 (18 against 26 of each
# element's own; benchmarks/mask_hash_ops.py, counted on the CPU). Each call measures its sides side by side on one
# warm machine, so that each call's table stands alone.
#   call 1  Llama-2-7B, 70 steps: compiledck (the default with the activation checkpoint inside each compiled layer's
#           graph, LEVERS.checkpoint_in_graph: the backward recomputes no down_proj, ~7 % of the base matmul work;
#           benchmarks/results/checkpoint_in_graph-cpu-2026-12-06.md), compiledmf (the default), compiled_d0 (dropout
#           0). Its peak beside compiledmf's: on the CPU the backward graph keeps the adapters' dropped inputs alive
#           (Before this: compiledmf32, compiledmf, compiled_d0, measured in user_path-s21-h100-2026-12-06.md.)
#   call 2  Llama-3-8B, 70 steps: compiledmf32, compiledmf, compiled_d0
#   call 3  benchmarks/mask_hash_ops.py --gpu (a few minutes at most; HASH_S stops it): inductor's Triton masks of
#           both forms against the eager int64 form's, bit for bit, one shape past 2**31 elements (the proof that
#           Triton's int32 multiplies and index wrap, which the CPU cannot give), and the mask kernel's time in each
#           form on Llama-2-7B's down_proj input, into $OUT/mask_hash_ops.md
#   call 4  benchmarks/mask_hash_ops.py --gpu --graphs --layer wide (a few minutes; GRAPHS_S stops it): how many
#           masks each compiled graph hashes per element in inductor's CUDA code, for a LoRA'd linear and a decoder
#           layer at Llama-2-7B's widths, and the SASS of each hashing kernel, into $OUT/mask_hash_graphs.md. On the
#           CPU (mask_hash_count-cpu-2026-12-06.md) the backward hashes each mask once: 3 a step per adapter
#           (forward, recompute, backward); call 4 checks that the GPU's code says the same
#   bash benchmarks/device_jobs/h200-s21.sh CALL $OUT        (SIDES1-2, STEPS, BUDGET_S, HASH_S to fit a short lease)
# If compiledck is faster than compiledmf (no recompiles, no "eagerly" event in its train.log, its peak within the
# GPU's room): flip LEVERS.checkpoint_in_graph on (engine/train/speed.py) and record it in benchmarks/results/.
# Carry .whl (with trl) and .whl25 (transformers 5.25). If compiledmf32 is faster than compiledmf on both models (no
# recompiles, the same peak) and call 3 says "all equal": flip LEVERS.mask_hash32 on (engine/train/speed.py; the
# plan's mask_hash32 and the trainer then follow it), record the results in benchmarks/results/ and the lever's
# comment, and drop the int64 form's "off" note in engine/train/mask_free_dropout.py's docstring.
CALL=${1:?call 1, 2, 3 or 4}
OUT=${2:?results directory}
JOB=s21 source "$(dirname "$0")/begin.sh"
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-compiledck,compiledmf,compiled_d0} STEPS=${STEPS:-70} SIDE_S=200 ;;
2) ARCH=llama3-8b SIDES=${SIDES2:-compiledmf32,compiledmf,compiled_d0} STEPS=${STEPS:-70} SIDE_S=200 ;;
3) source benchmarks/device_jobs/lib.sh      # step: under a time limit, logged to $R/mask_hash.log
   step mask_hash "${HASH_S:-420}" python3 benchmarks/mask_hash_ops.py --gpu --out "$OUT/mask_hash_ops.md"
   cp "$R/mask_hash.log" "$R/progress" "$OUT/" 2>/dev/null
   exit 0 ;;
4) source benchmarks/device_jobs/lib.sh
   step mask_hash_graphs "${GRAPHS_S:-480}" python3 benchmarks/mask_hash_ops.py --gpu --graphs --layer wide \
       --out "$OUT/mask_hash_graphs.md"
   cp "$R/mask_hash_graphs.log" "$R/progress" "$OUT/" 2>/dev/null
   exit 0 ;;
esac
source benchmarks/device_jobs/levers_call.sh   # begin.sh made the repository the working directory
