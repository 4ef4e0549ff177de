# Sourced last by a per-call device job (h200-s17.sh, h200-s18.sh) after begin.sh and its case over CALL set ARCH,
# SIDES and maybe STEPS / SIDE_S: runs the call's sides through the lever harness within the job's deadline, then
# puts what comes back into $OUT (the cumulative table, the adapters' agreement, every side's files as one tarball).
DEADLINE_S=$(( ${BUDGET_S:-540} - $(date +%s) + START ))
ARCH=$ARCH SIDES=$SIDES STEPS=${STEPS:-50} WARMUP=10 DEADLINE_S=$DEADLINE_S SIDE_S=${SIDE_S:-200} \
    bash benchmarks/device_jobs/h200-2026-12-03-levers.sh "$R/levers"
cp "$R/levers/user_path_all.md" "$OUT/levers.md" 2>/dev/null; cp "$R/levers/adapters.md" "$OUT/" 2>/dev/null
tar czf "$OUT/call$CALL.tgz" -C "$(dirname "$R")" "$(basename "$R")"
ls -la "$OUT"
