#!/bin/bash
# nvidia-h200, 2026-12-03, session 12 (issue 26): where the compiled step's time goes, and the CUDA-graph lever.
#   call 1  Llama-2-7B: torch.profiler over two steady steps with the decoder layers compiled (the kernels, the
#           GPU's busy share, a Chrome trace), then the cudagraphs side on the user's path (never reached step 1
#           yet: it gets the time), then the eager default's profile if time is left
#   call 2  Llama-2-7B, the host's share cut (profile of call 1: the GPU idle a third of the compiled step, the
#           host busy throughout: 64 guard checks a step at ~0.7 ms, 448 optimizer syncs, Python launches):
#           the best stack, compiled, compiledhost (fused AdamW + trimmed guards), compiledcpp (+ C++ wrapper)
#   call 3  Llama-3-8B: ARCH3_SIDES (default best,compiled,compiledhost)
#   bash benchmarks/device_jobs/h200-2026-12-03-s12.sh CALL $OUT      (carry .whl and .whl25)
# At most 8 files come back: everything is written under /tmp/s12/callN and returned as one tarball, beside the
# tables and the trace.
CALL=${1:?call 1}
OUT=${2:?results directory}
R=/tmp/s12/call$CALL
mkdir -p "$R" "$OUT"
cd "$(dirname "$0")/../.." || exit 1
START=$(date +%s)
if [ ! -f /tmp/site25/.done ]; then  # a warm machine keeps /tmp: the wheels go in once
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site25 \
        .whl25/*.whl && touch /tmp/site25/.done
fi
export PYTHONPATH=/tmp/site25:/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
left() { echo $(( $1 - $(date +%s) + START )); }
case $CALL in
1)
    timeout $(left 230) python3 benchmarks/profile_step.py llama2-7b --compile --steps 8 --profile 2 --top 40 \
        --work /tmp/up --trace /tmp/trace-compiled.json --out "$R/profile-compiled.md" > "$R/profile-compiled.log" 2>&1
    gzip -c /tmp/trace-compiled.json > "$R/trace-compiled.json.gz" 2>/dev/null
    tail -3 "$R/profile-compiled.log"; head -5 "$R/profile-compiled.md"
    SIDES=cudagraphs STEPS=70 WARMUP=10 DEADLINE_S=$(left 480) SIDE_S=$(left 480) \
        bash benchmarks/device_jobs/h200-2026-12-03-levers.sh "$R/cudagraphs"
    T=$(left 560)
    [ "$T" -gt 60 ] && timeout $T python3 benchmarks/profile_step.py llama2-7b --steps 6 --profile 2 --top 40 \
        --work /tmp/up --out "$R/profile-eager.md" > "$R/profile-eager.log" 2>&1
    ;;
2)
    SIDES=${SIDES2:-best,compiled,compiledhost,compiledcpp} STEPS=50 WARMUP=10 DEADLINE_S=$(left 545) SIDE_S=200 \
        bash benchmarks/device_jobs/h200-2026-12-03-levers.sh "$R/levers"
    cp "$R/levers/user_path_all.md" "$OUT/levers.md"
    ;;
3)
    ARCH=llama3-8b SIDES=${ARCH3_SIDES:-best,compiled,compiledhost} STEPS=50 WARMUP=10 DEADLINE_S=$(left 545) \
        SIDE_S=200 bash benchmarks/device_jobs/h200-2026-12-03-levers.sh "$R/levers"
    cp "$R/levers/user_path_all.md" "$OUT/levers.md"
    ;;
esac
mv "$R/trace-compiled.json.gz" "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C /tmp/s12 "call$CALL"
cp "$R"/*.md "$OUT/" 2>/dev/null; cp "$R/cudagraphs/user_path_all.md" "$OUT/cudagraphs.md" 2>/dev/null
ls -la "$OUT"
