#!/bin/bash
# Ran on an nvidia-h100-x1 in session 6 (results: throughput-h100-2026-11-23f-llama3.md, sample_cost-h100-2026-11-23f.md).
# Steps 2 and 3 stalled until their time limit: sample_cost.py then forced the compiled create_block_mask (fixed);
# step 4 was stopped for the device budget. In order of what the open goals needed:
# 1. Llama-3-8B side by side with the eager block mask now the default (engine/plain was 4.17x, goal 4.5x);
# 2. the samples' cost with generate and with the fast decode path (#11: goal under 5 % of training time);
# 3. the compiled-layers experiment (lever row 9), whose session-5 results were lost with the machine.
# Poll without gaps over 30 s, and tar the results at the end of the same call that sees "all done".
#   setsid nohup bash benchmarks/device_jobs/h100-next.sh /tmp/job > /tmp/job.out 2>&1 &   then poll /tmp/job/progress
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step throughput-llama3 900 python benchmarks/throughput.py llama3-8b --steps 12 --out "$R/throughput-llama3.md"
step samples-generate 420 python benchmarks/sample_cost.py llama2-7b --steps 25 --out "$R/sample_cost-generate.md"
step samples-fast 420 python benchmarks/sample_cost.py llama2-7b --steps 25 --fast-decode --out "$R/sample_cost-fast.md"
step l3-9 420 python benchmarks/levers.py llama3-8b --rows 5,9 --steps 10 --out "$R/levers-llama3-9.md"
echo "== $(date +%T) all done" >> "$R/progress"
