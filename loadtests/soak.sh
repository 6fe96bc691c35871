#!/usr/bin/env bash
# The soak test: the release wisp under steady load (half of a measured
# maximum) for DURATION seconds while tokens churn every second, the issuer
# rotates its key every 30 s, the policy file is replaced every 5 s and the
# config reloaded (SIGHUP) every minute. 127.0.0.1 only; bounded in time.
#
#   bash loadtests/soak.sh              # 10 minutes; writes loadtests/SOAK.md
#
# Knobs: DURATION=600, RATE (req/s; default: half the measured maximum),
# CONNECTIONS=16, SKIP_BUILD=1, RESULTS=loadtests/SOAK.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-600}
CONNECTIONS=${CONNECTIONS:-16}
RESULTS=${RESULTS:-$ROOT/loadtests/SOAK.md}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
if [ -z "${SKIP_BUILD:-}" ]; then
    echo "[soak] building (release; a cold build takes ~10 min on 2 cores)" >&2
    cargo build --release --quiet --bin wisp --example soak
fi
out=$(mktemp)
status=0
"$TARGET/release/examples/soak" --wisp "$TARGET/release/wisp" --duration "$DURATION" \
    --connections "$CONNECTIONS" ${RATE:+--rate "$RATE"} | tee "$out" || status=$?
{
    echo "# Soak results"
    echo
    echo "\`DURATION=$DURATION bash loadtests/soak.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, commit $(git rev-parse --short HEAD):"
    echo
    echo '```text'
    cat "$out"
    echo '```'
} >"$RESULTS"
rm -f "$out"
exit "$status"
