#!/bin/bash
# Run on an nvidia-h200 lease, 2026-12-02 (session 7): h100-next.sh as it was (#11, then #12's open experiment). In order of what the open goals need:
# 1. what one batch of samples costs in steady state, generate against fast decode (#11: under 5 % of training
#    time at the defaults; session 6 saw only fast decode's first calls, 18-27 s with compilation);
# 2. the same on Llama-3-8B (a 128k vocabulary: the head is a larger share of a decode step);
# 3. the compiled-layers experiment (lever row 9) on Llama-3-8B, whose results were lost in session 5 and cut
#    for the budget in session 6.
# Poll without gaps over 30 s, and tar $R in every poll call.
#   setsid nohup bash benchmarks/device_jobs/h100-next.sh /tmp/job > /tmp/job.out 2>&1 &   then poll /tmp/job/progress
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step decode-llama2 420 python benchmarks/decode_cost.py llama2-7b --repeats 5 --out "$R/decode_cost-llama2.md"
step decode-llama3 420 python benchmarks/decode_cost.py llama3-8b --repeats 4 --out "$R/decode_cost-llama3.md"
step l3-9 420 python benchmarks/levers.py llama3-8b --rows 5,9 --steps 10 --out "$R/levers-llama3-9.md"
echo "== $(date +%T) all done" >> "$R/progress"
