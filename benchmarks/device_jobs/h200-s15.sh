#!/bin/bash
# nvidia-h200, the lease after session 14 (issue 26): what user_path-s14-h200-2026-12-04.md left open. Calls back to
# back on one warm machine share /tmp/up (models, data, every side's run); carry .whl (with trl: lean's offloading)
# and .whl25.
#   call 1  Llama-2-7B: compiled and compiledvl (packed rows through torch's variable-length flash attention instead
#           of flex: flex's kernels were 12-16 % of the compiled step in s12's profile), 70 steps each
#   call 2  Llama-2-7B, LoRA dropout 0, 30 steps each: nodrop (eager, flex), varlen_nd (eager, varlen) and
#           compiledvl_nd: the adapters and losses against nodrop's (adapter_agreement.py), beside s13's bf16
#           yardstick (lora_B 12.3-12.7 %): is varlen the same computation
#   call 3  Llama-2-7B, 20 steps each with the trainer's CUDA allocations recorded from step 3 (past the compile,
#           which broke under recording in s14): compiled_mem and compiledbnb_mem; memory_peak.py names what is
#           alive at each peak (where the in-graph dequantise's +0.30 GiB sits)
#   call 4  Llama-3-8B: the best stack and compiledvl (or compiled_d0: what LoRA dropout costs), 70 steps
#   (in that order of need: a short lease runs the first ones)
#   bash benchmarks/device_jobs/h200-s15.sh CALL $OUT        (SIDES1-4, STEPS, BUDGET_S to fit a short lease)
CALL=${1:?call 1, 2, 3 or 4}
OUT=${2:?results directory}
JOB=s15 source "$(dirname "$0")/begin.sh"
# a machine kept warm from an earlier call installed the wheels once: add any wheel carried since (trl in s14)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/trl-*.whl 2>/dev/null
DEADLINE_S=$(( ${BUDGET_S:-530} - $(date +%s) + START ))
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1) ARCH=llama2-7b SIDES=${SIDES1:-compiled,compiledvl} STEPS=${STEPS:-70} SIDE_S=240 ;;
2) ARCH=llama2-7b SIDES=${SIDES2:-nodrop,varlen_nd,compiledvl_nd} SIDE_S=170 ;;
3) ARCH=llama2-7b SIDES=${SIDES3:-compiled_mem,compiledbnb_mem} SIDE_S=260 ;;
4) ARCH=llama3-8b SIDES=${SIDES4:-best,compiledvl} STEPS=${STEPS:-70} SIDE_S=240 ;;
esac
ARCH=$ARCH SIDES=$SIDES STEPS=${STEPS:-50} WARMUP=10 DEADLINE_S=$DEADLINE_S SIDE_S=${SIDE_S:-200} bash $L "$R/levers"
cp "$R/levers/user_path_all.md" "$OUT/levers.md" 2>/dev/null; cp "$R/levers/adapters.md" "$OUT/" 2>/dev/null
[ "$CALL" = 3 ] && cp /tmp/up/*.mem.md "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C /tmp/s15 "call$CALL"
ls -la "$OUT"
