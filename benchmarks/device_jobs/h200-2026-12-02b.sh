#!/bin/bash
# nvidia-h200 lease, 2026-12-02 (session 7), second machine: h200-2026-12-02.sh again, without the stack dumps
# that crashed three of its four processes, and with the compiled-layers row leaving Liger's in-layer kernels
# to inductor (dynamo raised in Liger's RMSNorm). Order: what #11 needs first, then #12's open lever row.
#   setsid nohup bash benchmarks/device_jobs/h200-2026-12-02b.sh /tmp/job > /tmp/job.out 2>&1 &
R=${1:-/tmp/job}
mkdir -p "$R"
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.." || exit 1
step decode-llama2 360 python benchmarks/decode_cost.py llama2-7b --repeats 4 --out "$R/decode_cost-llama2.md"
step l3-9 420 python benchmarks/levers.py llama3-8b --rows 5,9 --steps 10 --out "$R/levers-llama3-9.md"
step decode-llama3 360 python benchmarks/decode_cost.py llama3-8b --repeats 3 --out "$R/decode_cost-llama3.md"
echo "== $(date +%T) all done" >> "$R/progress"
