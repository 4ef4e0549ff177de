#!/bin/bash
# Does LEVERS.checkpoint_in_graph compile on a GPU (inductor's CUDA path: no graph break, no fallback to eager)?
# The embedded demo through `lorapilot train` with compiled layers and the lever on, 6 steps: a few minutes at most,
# for a lease too short for h200-s21.sh call 1. Writes $OUT/ck-check.txt (train.log's compile and fallback lines,
# the train records) and the run's train.log.
#   bash benchmarks/device_jobs/ck-check-s21.sh $OUT
CALL=ck
OUT=${1:?results directory}
JOB=s21 source "$(dirname "$0")/begin.sh"
sed 's/^training:/training:\n  compile: true/' presets/demo.yaml > presets/ck-check.yaml   # its data path is relative
BENCH_LEVERS=mask_free_dropout=true,checkpoint_in_graph=true \
PYTHONPATH=benchmarks/lever_site:$PWD:$PYTHONPATH TORCH_LOGS=graph_breaks,recompiles \
    timeout "${CK_S:-150}" python3 -m tui.entry train presets/ck-check.yaml --run-dir "$R/run" --max-steps 6 \
    > "$OUT/ck-cli.log" 2>&1
echo "rc=$?" >> "$OUT/ck-cli.log"
{ grep -i -E "compil|fallback|eager|graph break|checkpoint|dropout" "$R/run/train.log" | head -40
  grep '"kind": "train"' "$R/run/metrics.jsonl" | cut -c1-220; } > "$OUT/ck-check.txt"
cp "$R/run/train.log" "$OUT/" 2>/dev/null
cat "$OUT/ck-check.txt"; tail -20 "$OUT/ck-cli.log"
