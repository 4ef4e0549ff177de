#!/bin/bash
# Session 3's H100 measurements, one after the other, each under its own time limit.
# Started detached (setsid nohup) so that it outlives one device call; progress in $R/progress.
#   bash benchmarks/device_jobs/h100-2026-11-23b.sh /tmp/job
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step samples_own 480 python benchmarks/sample_cost.py llama2-7b --own-block-mask --out "$R/sample_cost_own.txt"
step levers_l3 780 python benchmarks/levers.py llama3-8b --rows 5,8,9,10 --out "$R/levers-llama3-8b.md"
step oom 600 python benchmarks/gpu_checks.py oom --arch llama2-7b
step levers_l2 1300 python benchmarks/levers.py llama2-7b --out "$R/levers-llama2-7b.md"
echo "== $(date +%T) all done" >> "$R/progress"
