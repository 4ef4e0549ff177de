#!/bin/bash
# nvidia-h200, session 13 (issue 26): the NF4 weights dequantised inside the compiled layers (LEVERS.graph_dequant,
# engine.train.graph_dequant) against bitsandbytes' ops, whose Python the s12 profile found on the host's path.
#   call 1  dequant_check.py (bit-exactness against bitsandbytes on the GPU, one projection's time both ways), then
#           Llama-2-7B on the user's path: the best stack, compiled (today's default of long runs), compiledgd
#   call 2  Llama-2-7B: lean with the layers compiled and dequantised in the graph (leancgd); the adapters after 30
#           steps without dropout: nodrop (eager), compiledgd_nd, compiled_nd
#   call 3  Llama-3-8B: the best stack, compiled, compiledgd
#   (call 3: SIDES3, STEPS3, BUDGET3_S to fit a short lease)
#   bash benchmarks/device_jobs/h200-s13.sh CALL $OUT      (carry .whl and .whl25; calls back to back share /tmp/up)
CALL=${1:?call 1, 2 or 3}
OUT=${2:?results directory}
JOB=s13 source "$(dirname "$0")/begin.sh"
left() { echo $(( $1 - $(date +%s) + START )); }
L=benchmarks/device_jobs/h200-2026-12-03-levers.sh
case $CALL in
1)
    timeout 120 python3 benchmarks/dequant_check.py --out "$R/dequant_check.md" > "$R/dequant_check.log" 2>&1
    tail -20 "$R/dequant_check.log"
    SIDES=${SIDES1:-best,compiled,compiledgd} STEPS=50 WARMUP=10 DEADLINE_S=$(left 530) SIDE_S=200 bash $L "$R/levers"
    ;;
2)
    SIDES=${SIDES2:-leancgd,nodrop,compiledgd_nd,compiled_nd} STEPS=50 WARMUP=10 DEADLINE_S=$(left 530) SIDE_S=200 \
        bash $L "$R/levers"
    ;;
3)
    ARCH=llama3-8b SIDES=${SIDES3:-best,compiled,compiledgd} STEPS=${STEPS3:-50} WARMUP=10 DEADLINE_S=$(left ${BUDGET3_S:-530}) SIDE_S=200 \
        bash $L "$R/levers"
    ;;
esac
cp "$R/levers/user_path_all.md" "$OUT/levers.md" 2>/dev/null; cp "$R/levers/adapters.md" "$OUT/" 2>/dev/null
cp "$R/dequant_check.md" "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C /tmp/s13 "call$CALL"
ls -la "$OUT"
