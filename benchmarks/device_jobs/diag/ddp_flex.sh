#!/bin/bash
# The three ddp_flex.py cases on one GPU, each under a time limit: bash ddp_flex.sh OUT
OUT=${1:-/tmp/ddpflex}; mkdir -p "$OUT"; cd "$(dirname "$0")" || exit 1
run() { local name=$1; shift; timeout -k 5 150 python -m torch.distributed.run --standalone "$@" > "$OUT/$name.log" 2>&1; echo "$name rc=$?" >> "$OUT/rc"; }
run one --nproc_per_node=1 ddp_flex.py
run two --nproc_per_node=2 ddp_flex.py
run two-no-opt --nproc_per_node=2 ddp_flex.py --no-optimize-ddp
