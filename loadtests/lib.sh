# Shared by loadtests/run.sh and loadtests/instructions.sh (sourced, after
# each defines `log`).

# workspace NAME: a fresh temp dir in $WORK, and an exit trap that stops
# every pid in $PIDS (TERM, then KILL after 10 s) and removes $WORK (kept
# with KEEP=1).
workspace() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
