#!/usr/bin/env bash
# Decisions per second for one reused ES256 token (token and decision cache
# hits) through the decision service's gRPC `Check` and forward-auth
# endpoints, beside the proxy's hit path (which also forwards to nginx), on
# one wisp with both listeners and the load tests' 50 policies.
#
#   bash loadtests/decision.sh
#
# Closed loop (examples/decision_load.rs): CONNECTIONS connections, each
# sending its next request when the previous answer arrives, DURATION s per
# endpoint after a 2 s warm-up, ROUNDS rounds interleaved (best kept).
# Knobs: DURATION=10, ROUNDS=3, CONNECTIONS=32, BASE_PORT=18580, KEEP=1,
# SKIP_BUILD=1, CARGO_TARGET_DIR, PROFILE=release (PROFILE=debug with
# SKIP_BUILD=1 only checks that the script runs: its numbers mean nothing).
# Everything on 127.0.0.1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
BASE_PORT=${BASE_PORT:-18580}
log() { printf '[decision] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "${need[@]}" >/dev/null; } ||
        die "could not install ${need[*]}"
fi
PATH=$PATH:/usr/sbin

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release}
if [ -z "${SKIP_BUILD:-}" ]; then
    log "building wisp and the helpers (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin wisp --example mint_tokens --example decision_load)
fi
WISP=$TARGET/$PROFILE/wisp
LOAD=$TARGET/$PROFILE/examples/decision_load
MINT=$TARGET/$PROFILE/examples/mint_tokens

# shellcheck source=loadtests/lib.sh
. "$ROOT/loadtests/lib.sh"
workspace wisp-decision

P_NGINX=$BASE_PORT P_WISP=$((BASE_PORT + 1)) P_DECISION=$((BASE_PORT + 2)) P_ADMIN=$((BASE_PORT + 3))
"$MINT" "$WORK" --rotating 1 --fill 1 >/dev/null
head -1 "$WORK/token_es256.txt" >"$WORK/token.txt"
write_policies "$WORK/policies"
write_nginx_conf "$P_NGINX" 1
cat >"$WORK/wisp.yaml" <<YAML
listen: 127.0.0.1:$P_WISP
upstream: { address: 127.0.0.1:$P_NGINX }
decision_service: { listen: 127.0.0.1:$P_DECISION }
admin: { listen: 127.0.0.1:$P_ADMIN }
issuers:
  - name: load
    issuer: https://issuer.wisp.test
    jwks: { file: $WORK/jwks.json }
    audiences: [orders]
    algorithms: [ES256, RS256]
    claims: { tags: /tags }
policies: { dir: $WORK/policies, watch: false }
log: { decisions: none }
threads: 2
shutdown_grace: 1s
YAML
nginx -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
"$WISP" serve --config "$WORK/wisp.yaml" >"$WORK/wisp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$P_ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$P_ADMIN/readyz" >/dev/null || die "wisp did not come up (see $WORK/wisp.log)"

run() { # mode addr seconds → rps
    "$LOAD" --mode "$1" --addr "$2" --token-file "$WORK/token.txt" \
        --connections "$CONNECTIONS" --duration "$3" >"$WORK/load-$1.txt" ||
        die "$1 failed: $(cat "$WORK/load-$1.txt")"
    sed -n 's/.*rps=\([0-9]*\).*p50_us=\([0-9]*\) p99_us=\([0-9]*\).*/\1 \2 \3/p' "$WORK/load-$1.txt"
}
declare -A ADDR=([proxy]=127.0.0.1:$P_WISP [grpc]=127.0.0.1:$P_DECISION [http]=127.0.0.1:$P_DECISION)
declare -A BEST=()
for mode in proxy grpc http; do run "$mode" "${ADDR[$mode]}" 2 >/dev/null; done
for round in $(seq "$ROUNDS"); do
    for mode in proxy grpc http; do
        read -r rps p50 p99 < <(run "$mode" "${ADDR[$mode]}" "$DURATION")
        log "round $round $mode: $rps/s p50 ${p50}µs p99 ${p99}µs"
        best=${BEST[$mode]:-0 0 0}
        [ "$rps" -gt "${best%% *}" ] && BEST[$mode]="$rps $p50 $p99"
    done
done
printf '\n%s, %s build, %s cores, %s connections, %ss × %s rounds (best), one reused ES256 token, 50 policies\n\n' \
    "$(date -u +%Y-%m-%d)" "$PROFILE" "$(nproc)" "$CONNECTIONS" "$DURATION" "$ROUNDS"
printf '| endpoint | decisions/s | p50 | p99 |\n|---|---:|---:|---:|\n'
for mode in proxy grpc http; do
    read -r rps p50 p99 <<<"${BEST[$mode]}"
    case $mode in
        proxy) what="proxy hit path (decide + forward to nginx)" ;;
        grpc) what="ext_authz gRPC \`Check\` (h2c)" ;;
        http) what="forward-auth \`GET /auth\` (HTTP/1.1)" ;;
    esac
    printf '| %s | %s | %s µs | %s µs |\n' "$what" "$rps" "$p50" "$p99"
done
