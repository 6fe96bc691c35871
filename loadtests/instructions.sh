#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the public route
# against a reused (cached) ES256 token, through the same release wisp. Unlike
# requests/s on a shared 2-core machine this does not move with other load,
# so it can judge a change to the hit path that wrk's ±5–10% noise hides.
# (It counts instructions, not time: cache misses and contention between
# worker threads, which valgrind serializes, do not show.)
#
#   bash loadtests/instructions.sh            # N=3000 requests per route
#
# Knobs: N=3000, BASE_PORT=18480, KEEP=1 (keep the temp dir with the
# callgrind profiles: callgrind_annotate <file> shows where they went),
# SKIP_BUILD=1, WISP=path/to/another/wisp (e.g. a build of another commit),
# ALG=es256|rs256 (the reused token's algorithm), COLD=1 (the token cache
# off and N distinct ES256 tokens: the cold path; ALG is ignored).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-3000}
ALG=${ALG:-es256}
case "$ALG" in es256 | rs256) ;; *) echo "ALG must be es256 or rs256" >&2; exit 2 ;; esac
BASE_PORT=${BASE_PORT:-18480}
log() { printf '[instructions] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
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
if [ -z "${SKIP_BUILD:-}" ]; then
    log "building wisp and the helpers (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin wisp --example mint_tokens --example loadgen)
fi
WISP=${WISP:-$TARGET/release/wisp}
LOADGEN=$TARGET/release/examples/loadgen

# shellcheck source=loadtests/lib.sh
. "$ROOT/loadtests/lib.sh"
workspace wisp-instructions

P_NGINX=$BASE_PORT P_WISP=$((BASE_PORT + 1)) P_ADMIN=$((BASE_PORT + 11))
if [ -n "${COLD:-}" ]; then
    "$TARGET/release/examples/mint_tokens" "$WORK" --rotating "$((N + 300))" --fill 1 >/dev/null
    cp "$WORK/tokens_es256_rotating.txt" "$WORK/tokens.txt"
    CACHE=0 WHAT="$N distinct ES256 tokens, token cache off (the cold path)"
else
    "$TARGET/release/examples/mint_tokens" "$WORK" --rotating 1 --fill 1 >/dev/null
    head -1 "$WORK/token_$ALG.txt" >"$WORK/tokens.txt"
    CACHE=64MiB WHAT="one reused $ALG token (token and decision cache hits)"
fi
write_policies "$WORK/policies"
write_nginx_conf "$P_NGINX" 1
cat >"$WORK/wisp.yaml" <<EOF
listen: 127.0.0.1:$P_WISP
upstream: { address: 127.0.0.1:$P_NGINX }
admin: { listen: 127.0.0.1:$P_ADMIN }
issuers:
  - name: load
    issuer: https://issuer.wisp.test
    jwks: { file: $WORK/jwks.json }
    audiences: [orders]
    algorithms: [ES256, RS256]
    claims: { tags: /tags }
policies: { dir: $WORK/policies, watch: false }
routes: { public: ["/pub/*"] }
authn: { token_cache: { max_bytes: $CACHE } }
log: { decisions: none }
threads: 2
shutdown_grace: 1s
EOF
nginx -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out.%p" \
    "$WISP" serve --config "$WORK/wisp.yaml" >"$WORK/wisp.log" 2>&1 &
VALGRIND=$!
PIDS+=($VALGRIND)
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$P_ADMIN/readyz" >/dev/null 2>&1 && break
    kill -0 "$VALGRIND" 2>/dev/null || die "wisp under valgrind exited (see $WORK/wisp.log)"
    sleep 0.2
done
curl -sf "http://127.0.0.1:$P_ADMIN/readyz" >/dev/null || die "wisp under valgrind did not come up"

send() { # path [token file] requests
    local args=(--url "http://127.0.0.1:$P_WISP$1" --requests "$3" --connections 2 --max-time 600)
    [ -n "$2" ] && args+=(--token-file "$2")
    "$LOADGEN" "${args[@]}" >"$WORK/loadgen.txt" || die "requests to $1 failed: $(cat "$WORK/loadgen.txt")"
}
log "warming up (the first token verification, connection pools)"
send /pub/x "" 300
# (loadgen sends line i of the file with request i: the cold run's
# warm-up tokens are not among the measured ones, see the tail below)
head -300 "$WORK/tokens.txt" >"$WORK/warmup.txt"
send /api/orders "$WORK/warmup.txt" 300
callgrind_control -z "$VALGRIND" >/dev/null 2>&1
log "$N requests on the public route"
send /pub/x "" "$N"
callgrind_control -d public "$VALGRIND" >/dev/null 2>&1
log "$N requests with $WHAT"
tail -n "$N" "$WORK/tokens.txt" >"$WORK/measured.txt"
send /api/orders "$WORK/measured.txt" "$N"
callgrind_control -d cached "$VALGRIND" >/dev/null 2>&1

per_request() { # dump name
    local file
    file=$(grep -l "^desc: Trigger: dump $1" "$WORK"/callgrind.out.* | head -1)
    [ -n "$file" ] || die "no callgrind dump named $1"
    awk -v n="$N" '/^(summary|totals):/ { printf "%d", $2 / n; exit }' "$file"
}
public=$(per_request public)
cached=$(per_request cached)
printf '\n| route | instructions per request |\n|---|---:|\n'
printf '| public (no auth) | %s |\n| %s | %s |\n' "$public" "$WHAT" "$cached"
awk -v p="$public" -v c="$cached" 'BEGIN { printf "| **added by authentication** | %d (%.2f× the public route) |\n", c - p, c / p }'
log "valgrind has no SHA-NI: a token seen for the first or second time costs its SHA-256 (~15k instructions here, a few hundred cycles on the real CPU); later uses find it by its text"
