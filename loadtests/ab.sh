#!/usr/bin/env bash
# Forwarding A/B: several wisp binaries (and HAProxy as a yardstick) as
# plain proxies in front of the same nginx, measured interleaved in one run.
# For finding a forwarding regression: a build of an older commit against
# today's, or one code change at a time. 127.0.0.1 only, every run bounded.
#
#   bash loadtests/ab.sh NAME=/path/to/wisp NAME=/path/to/wisp ...
#
# Each wisp runs `routes.public: [/*]` (no authentication) with `threads: 2`
# and `log.decisions: none`; HAProxy runs `nbthread 2`. Prints every round's
# req/s per peer, then each peer's median and its ratio to the first.
# Knobs: DURATION=10, WARMUP=2, ROUNDS=5, WRK_THREADS=2, CONNECTIONS=64,
# BASE_PORT=18280, HAPROXY=1 (0: leave HAProxy out), EXTRA_YAML (appended
# to every wisp config), KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-5}
WRK_THREADS=${WRK_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
BASE_PORT=${BASE_PORT:-18280}
HAPROXY=${HAPROXY:-1}
LUA=$ROOT/loadtests/lua

log() { printf '[ab] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -ge 1 ] || die "usage: bash loadtests/ab.sh NAME=/path/to/wisp [NAME=/path/to/wisp ...]"
PATH=$PATH:/usr/sbin
for tool in nginx wrk curl; do command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"; done
[ "$HAPROXY" = 0 ] || command -v haproxy >/dev/null || die "haproxy is not installed (or HAPROXY=0)"

# shellcheck source=loadtests/lib.sh
. "$ROOT/loadtests/lib.sh"
workspace wisp-ab

P_NGINX=$BASE_PORT
write_nginx_conf "$P_NGINX" auto
printf '{"keys":[%s]}\n' "$(cat "$ROOT/tests/fixtures/rsa2048.jwk.json")" >"$WORK/jwks.json"
nginx -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

wait_http() { # url what
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = 200 ] && return 0
        sleep 0.1
    done
    tail -5 "$WORK/$2.log" >&2 || true
    die "$2 did not come up ($1)"
}
wait_http "http://127.0.0.1:$P_NGINX/" nginx

NAMES=()
declare -A PORT
i=0
for arg in "$@"; do
    name=${arg%%=*} bin=${arg#*=}
    [ "$name" != "$arg" ] && [ -x "$bin" ] || die "$arg: expected NAME=/path/to/an/executable/wisp"
    i=$((i + 1))
    port=$((BASE_PORT + 2 * i))
    cat >"$WORK/$name.yaml" <<EOF
listen: 127.0.0.1:$port
upstream: { address: 127.0.0.1:$P_NGINX }
admin: { listen: 127.0.0.1:$((port + 1)) }
issuers:
  - name: ab
    issuer: https://issuer.wisp.test
    jwks: { file: $WORK/jwks.json }
    audiences: [orders]
    algorithms: [RS256]
policies: { dir: $ROOT/policies, watch: false }
routes: { public: ["/*"] }
log: { decisions: none }
threads: 2
shutdown_grace: 1s
${EXTRA_YAML:-}
EOF
    "$bin" serve --config "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
    PORT[$name]=$port
done
if [ "$HAPROXY" != 0 ]; then
    port=$((BASE_PORT + 1))
    {
        haproxy_base "$P_NGINX"
        printf 'frontend plain\n  bind 127.0.0.1:%s\n  default_backend nginx\n' "$port"
    } >"$WORK/haproxy.cfg"
    haproxy -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
    PIDS+=($!)
    NAMES+=(haproxy)
    PORT[haproxy]=$port
fi
for name in "${NAMES[@]}"; do wait_http "http://127.0.0.1:${PORT[$name]}/api/orders" "$name"; done

rps() { # port seconds → req/s (or 0)
    local line requests duration_us
    line=$(WISP_WRK_THREADS=$WRK_THREADS timeout $(($2 + 30)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" \
        -d"${2}s" --timeout 5s -s "$LUA/report.lua" "http://127.0.0.1:$1/api/orders" 2>&1 | grep '^RESULT' || true)
    requests=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<" $line")
    duration_us=$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' <<<" $line")
    awk -v r="${requests:-0}" -v d="${duration_us:-0}" 'BEGIN { printf "%.0f", (d > 0 ? r / (d / 1e6) : 0) }'
}

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RUNS
for round in $(seq "$ROUNDS"); do
    line="round $round:"
    for name in "${NAMES[@]}"; do
        [ "$WARMUP" -gt 0 ] && rps "${PORT[$name]}" "$WARMUP" >/dev/null
        r=$(rps "${PORT[$name]}" "$DURATION")
        RUNS[$name]="${RUNS[$name]:-} $r"
        line="$line $name=$r"
    done
    log "$line"
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
first=$(median <<<"${RUNS[${NAMES[0]}]}")
printf '%-16s %12s %12s %10s\n' peer "median req/s" "µs/request" "× ${NAMES[0]}"
for name in "${NAMES[@]}"; do
    m=$(median <<<"${RUNS[$name]}")
    awk -v n="$name" -v m="$m" -v f="$first" \
        'BEGIN { printf "%-16s %12.0f %12.1f %9.2f×\n", n, m, (m > 0 ? 1e6 / m : 0), (f > 0 ? m / f : 0) }'
done
