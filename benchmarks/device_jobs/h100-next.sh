#!/bin/bash
# For the next nvidia-h100-x1 lease (#12, #11): the compiled-layers experiment against the default (lever rows 5
# and 9, Llama-2-7B then Llama-3-8B), then the samples' cost with and without the fast decode path.
#   setsid nohup bash benchmarks/device_jobs/h100-next.sh /tmp/job &   then poll /tmp/job/progress
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step levers-llama2 900 python benchmarks/levers.py llama2-7b --rows 5,9,10 --steps 10 --out "$R/levers-llama2.md"
step levers-llama3 900 python benchmarks/levers.py llama3-8b --rows 5,9,10 --steps 10 --out "$R/levers-llama3.md"
# 25 steps, evaluations at 6, 12, 18, 24: the first evaluation holds the compilation, the median the rest
step samples-generate 600 python benchmarks/sample_cost.py llama2-7b --steps 25 --out "$R/sample_cost-generate.md"
step samples-fast 600 python benchmarks/sample_cost.py llama2-7b --steps 25 --fast-decode --out "$R/sample_cost-fast.md"
echo "== $(date +%T) all done" >> "$R/progress"
