#!/usr/bin/env bash
# wisp load tests: wisp, nginx and HAProxy (jwt_verify) side by side, on
# 127.0.0.1 only, every run bounded in time. See loadtests/README.md.
#
#   bash loadtests/run.sh            # everything, writes loadtests/RESULTS.md
#
# Knobs (environment): DURATION=10 (s per measured run), WARMUP=2 (s),
# ROUNDS=3 (each scenario this many times, interleaved; best kept),
# WRK_THREADS=2, CONNECTIONS=64, RATE=1000 (fixed-rate run, req/s),
# RATE_DURATION=10, ROTATING=10000, FILL=100000, FILL_CACHE=64MiB (the
# fill wisp's token cache bound: wisp's default, which keeps all FILL tokens),
# BASE_PORT=18080,
# RESULTS=loadtests/RESULTS.md, KEEP=1 (keep the temp dir), SKIP_BUILD=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
WRK_THREADS=${WRK_THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
RATE=${RATE:-1000}
RATE_DURATION=${RATE_DURATION:-10}
ROTATING=${ROTATING:-10000}
FILL=${FILL:-100000}
FILL_CACHE=${FILL_CACHE:-64MiB}
BASE_PORT=${BASE_PORT:-18080}
RESULTS=${RESULTS:-$ROOT/loadtests/RESULTS.md}
LUA=$ROOT/loadtests/lua

log() { printf '[loadtests] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------ prerequisites
need_packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_packages+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_packages+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_packages+=(wrk)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
command -v cmake >/dev/null 2>&1 || need_packages+=(cmake)   # pingora's zlib-ng
if [ ${#need_packages[@]} -gt 0 ]; then
    log "installing Debian packages: ${need_packages[*]}"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need_packages[@]}" >/dev/null ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "${need_packages[@]}" >/dev/null; } ||
        die "could not install ${need_packages[*]}"
fi
PATH=$PATH:/usr/sbin
haproxy_version=$(haproxy -v 2>&1 | sed -n 1p)
case "$haproxy_version" in
    *"version 2.5"* | *"version 2.6"* | *"version 2.7"* | *"version 2.8"* | *"version 2.9"* | *"version 3."*) ;;
    *) die "HAProxy >= 2.5 is needed for jwt_verify, found: $haproxy_version" ;;
esac

# -------------------------------------------------------------------- build
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if [ -z "${SKIP_BUILD:-}" ]; then
    log "building wisp and the load-test helpers (release; a cold build takes ~10 min on 2 cores)"
    (cd "$ROOT" && cargo build --release --quiet --bin wisp --example mint_tokens --example loadgen)
fi
WISP=$TARGET/release/wisp
MINT=$TARGET/release/examples/mint_tokens
LOADGEN=$TARGET/release/examples/loadgen
for bin in "$WISP" "$MINT" "$LOADGEN"; do [ -x "$bin" ] || die "missing $bin (build failed?)"; done

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------- workspace, cleanup
# shellcheck source=loadtests/lib.sh
. "$ROOT/loadtests/lib.sh"
workspace wisp-loadtests

P_NGINX=$BASE_PORT
P_PUBLIC=$((BASE_PORT + 1))
P_AUTH=$((BASE_PORT + 2))
P_NOCACHE=$((BASE_PORT + 3))
P_ONE=$((BASE_PORT + 4))
P_FILL=$((BASE_PORT + 5))
P_HA_ES=$((BASE_PORT + 101))
P_HA_RS=$((BASE_PORT + 102))
P_HA_PLAIN=$((BASE_PORT + 103))
for port in $P_NGINX $P_PUBLIC $P_AUTH $P_NOCACHE $P_ONE $P_FILL $P_HA_ES $P_HA_RS $P_HA_PLAIN \
    $((P_PUBLIC + 10)) $((P_AUTH + 10)) $((P_NOCACHE + 10)) $((P_ONE + 10)) $((P_FILL + 10)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is in use (set BASE_PORT)"
    fi
done

# ------------------------------------------------------------ keys, tokens
log "minting keys and tokens into $WORK"
"$MINT" "$WORK" --rotating "$ROTATING" --fill "$FILL" >/dev/null
ISSUER=https://issuer.wisp.test

# -------------------------------------------------------------------- configs
write_nginx_conf "$P_NGINX" auto

# HAProxy checks what wisp checks on a token (alg pinned, iss, aud, exp,
# signature) and authorizes on the sub prefix; it has no verification cache.
haproxy_frontend() { # name port alg pem
    cat <<EOF
frontend $1
  bind 127.0.0.1:$2
  http-request set-var(txn.now) date()
  http-request set-var(txn.bearer) http_auth_bearer
  http-request deny status 401 unless { var(txn.bearer),jwt_header_query('\$.alg') -m str $3 }
  http-request deny status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str $ISSUER }
  http-request deny status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str orders }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request deny status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify("$3","$4") -m int 1 }
  http-request deny status 403 unless { var(txn.bearer),jwt_payload_query('\$.sub') -m beg acme:frontend: }
  default_backend nginx
EOF
}
{
    haproxy_base "$P_NGINX"
    haproxy_frontend haproxy_es256 "$P_HA_ES" ES256 "$WORK/es256.pub.pem"
    haproxy_frontend haproxy_rs256 "$P_HA_RS" RS256 "$WORK/rs256.pub.pem"
    # Diagnostic: HAProxy as a plain proxy, to split its jwt_verify numbers
    # into forwarding and verification.
    printf 'frontend haproxy_plain\n  bind 127.0.0.1:%s\n  default_backend nginx\n' "$P_HA_PLAIN"
} >"$WORK/haproxy.cfg"

write_policies "$WORK/policies"
# Diagnostic: the same permit alone, to show what the 49 others cost.
mkdir -p "$WORK/policies-one"
cp "$ROOT/policies/wisp.cedarschema" "$WORK/policies-one/"
sed -n '/^@id("p37")/,/^$/p' "$WORK/policies/load.cedar" >"$WORK/policies-one/load.cedar"

wisp_config() { # name port cache_bytes public_routes [policies dir]
    cat >"$WORK/wisp-$1.yaml" <<EOF
listen: 127.0.0.1:$2
upstream: { address: 127.0.0.1:$P_NGINX }
admin: { listen: 127.0.0.1:$(($2 + 10)) }
issuers:
  - name: load
    issuer: $ISSUER
    jwks: { file: $WORK/jwks.json }
    audiences: [orders]
    algorithms: [ES256, RS256]
    claims: { tags: /tags }
authn: { token_cache: { max_bytes: $3 } }
policies: { dir: ${5:-$WORK/policies}, watch: false }
routes: { public: [$4] }
log: { decisions: none }
threads: 2
shutdown_grace: 1s
EOF
    "$WISP" check --config "$WORK/wisp-$1.yaml" >/dev/null || die "wisp check failed for wisp-$1.yaml"
}
wisp_config public "$P_PUBLIC" 64MiB "/*"
wisp_config auth "$P_AUTH" 64MiB ""
wisp_config nocache "$P_NOCACHE" 0 ""
wisp_config fill "$P_FILL" "$FILL_CACHE" ""
wisp_config one "$P_ONE" 64MiB "" "$WORK/policies-one"

# ------------------------------------------------------------------- servers
wait_http() { # url expected_status what
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" = "$2" ] && return 0
        sleep 0.1
    done
    die "$3 did not come up ($1)"
}
start() { # name command...
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    eval "PID_${name}=$!"
}
start nginx nginx -c "$WORK/nginx.conf"
wait_http "http://127.0.0.1:$P_NGINX/" 200 nginx
start haproxy haproxy -f "$WORK/haproxy.cfg"
wait_http "http://127.0.0.1:$P_HA_ES/" 401 haproxy
start wisp_public "$WISP" serve --config "$WORK/wisp-public.yaml"
start wisp_auth "$WISP" serve --config "$WORK/wisp-auth.yaml"
start wisp_nocache "$WISP" serve --config "$WORK/wisp-nocache.yaml"
start wisp_one "$WISP" serve --config "$WORK/wisp-one.yaml"
for p in $P_PUBLIC $P_AUTH $P_NOCACHE $P_ONE; do wait_http "http://127.0.0.1:$((p + 10))/readyz" 200 "wisp on $p"; done

# The peers must enforce before their speed means anything: no token, a
# forged signature and a foreign sub are refused by every authenticating peer.
TOKEN_ES=$(head -1 "$WORK/token_es256.txt")
TOKEN_RS=$(head -1 "$WORK/token_rs256.txt")
FORGED=${TOKEN_ES%?????}AAAAA
status() { curl -s -o /dev/null -w '%{http_code}' "$@" || true; }
SANITY=()
for peer in "wisp|$P_AUTH" "wisp (cache off)|$P_NOCACHE" "HAProxy (ES256)|$P_HA_ES"; do
    IFS='|' read -r name port <<<"$peer"
    set -- "$name" "$port"
    a=$(status "http://127.0.0.1:$2/api/orders")
    b=$(status -H "Authorization: Bearer $FORGED" "http://127.0.0.1:$2/api/orders")
    c=$(status -H "Authorization: Bearer $TOKEN_ES" "http://127.0.0.1:$2/api/orders")
    SANITY+=("$1: no token → $a, forged signature → $b, valid token → $c")
    [ "$a" = 401 ] && [ "$b" = 401 ] && [ "$c" = 200 ] || die "enforcement check failed: ${SANITY[-1]}"
done
b=$(status -H "Authorization: Bearer ${TOKEN_RS%?????}AAAAA" "http://127.0.0.1:$P_HA_RS/api/orders")
c=$(status -H "Authorization: Bearer $TOKEN_RS" "http://127.0.0.1:$P_HA_RS/api/orders")
SANITY+=("HAProxy (RS256): forged signature → $b, valid token → $c")
[ "$b" = 401 ] && [ "$c" = 200 ] || die "enforcement check failed: ${SANITY[-1]}"
c=$(status -H "Authorization: Bearer $TOKEN_ES" "http://127.0.0.1:$P_AUTH/admin")
SANITY+=("wisp: valid token on a path no policy permits → $c")
[ "$c" = 403 ] || die "enforcement check failed: ${SANITY[-1]}"

# ------------------------------------------------------------------ scenarios
# id | label | port | wrk script | token file (token.lua) or token list (rotate.lua)
SCENARIOS=(
    "direct|nginx direct (baseline)|$P_NGINX|report.lua|"
    "wisp_public|wisp, public route (no auth)|$P_PUBLIC|report.lua|"
    "wisp_es256|wisp, reused ES256 token, 50 policies|$P_AUTH|token.lua|$WORK/token_es256.txt"
    "wisp_one|wisp, reused ES256 token, 1 policy (diagnostic)|$P_ONE|token.lua|$WORK/token_es256.txt"
    "wisp_rs256|wisp, reused RS256 token, 50 policies|$P_AUTH|token.lua|$WORK/token_rs256.txt"
    "wisp_es256_nocache|wisp, reused ES256 token, cache off|$P_NOCACHE|token.lua|$WORK/token_es256.txt"
    "wisp_rotating|wisp, $ROTATING rotating ES256 tokens, cache on|$P_AUTH|rotate.lua|$WORK/tokens_es256_rotating.txt"
    "wisp_rotating_nocache|wisp, $ROTATING rotating ES256 tokens, cache off (cold path)|$P_NOCACHE|rotate.lua|$WORK/tokens_es256_rotating.txt"
    "haproxy_es256|HAProxy jwt_verify, reused ES256 token|$P_HA_ES|token.lua|$WORK/token_es256.txt"
    "haproxy_rs256|HAProxy jwt_verify, reused RS256 token|$P_HA_RS|token.lua|$WORK/token_rs256.txt"
    "haproxy_rotating|HAProxy jwt_verify, $ROTATING rotating ES256 tokens|$P_HA_ES|rotate.lua|$WORK/tokens_es256_rotating.txt"
    "haproxy_plain|HAProxy, no auth (diagnostic)|$P_HA_PLAIN|report.lua|"
)

# wrk_run script port file seconds → prints the RESULT line (or nothing)
wrk_run() {
    WISP_TOKEN_FILE=$3 WISP_TOKENS_FILE=$3 WISP_WRK_THREADS=$WRK_THREADS \
        timeout $(($4 + 30)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${4}s" --timeout 5s \
        -s "$LUA/$1" "http://127.0.0.1:$2/api/orders" 2>&1 | grep '^RESULT' || true
}
field() { # line key
    sed -n "s/.*[[:space:]]$2=\([0-9.]*\).*/\1/p" <<<" $1"
}

declare -A BEST_RPS BEST_P50 BEST_P99 BEST_ERR FAILED WHY
for round in $(seq "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r id label port script file <<<"$entry"
        [ -n "${FAILED[$id]:-}" ] && continue
        # Probe: the exact request the scenario sends must get a 200.
        probe_token=$file
        [ "$script" = rotate.lua ] && probe_token=$WORK/probe_token.txt && head -1 "$file" >"$probe_token"
        if [ -n "$file" ]; then
            code=$(status -H "Authorization: Bearer $(head -1 "$probe_token")" "http://127.0.0.1:$port/api/orders")
        else
            code=$(status "http://127.0.0.1:$port/api/orders")
        fi
        if [ "$code" != 200 ]; then
            FAILED[$id]=1 WHY[$id]="probe got HTTP $code"
            log "$label: FAILED (probe got HTTP $code)"
            continue
        fi
        log "round $round/$ROUNDS: $label"
        [ "$WARMUP" -gt 0 ] && wrk_run "$script" "$port" "$file" "$WARMUP" >/dev/null
        line=$(wrk_run "$script" "$port" "$file" "$DURATION")
        if [ -z "$line" ]; then
            FAILED[$id]=1 WHY[$id]="wrk produced no result"
            log "$label: FAILED (wrk produced no result)"
            continue
        fi
        requests=$(field "$line" requests)
        duration_us=$(field "$line" duration_us)
        non2xx=$(field "$line" non2xx)
        errors=$(($(field "$line" connect) + $(field "$line" read) + $(field "$line" write) + $(field "$line" timeout)))
        rps=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", (d > 0 ? r / (d / 1e6) : 0) }')
        log "  $rps req/s, non-2xx $non2xx, socket errors $errors"
        if [ "$non2xx" -gt 0 ] || [ "$errors" -gt $((requests / 100)) ] || [ "$requests" -eq 0 ]; then
            FAILED[$id]=1 WHY[$id]="$non2xx non-2xx responses, $errors socket errors of $requests requests"
            log "$label: FAILED (${WHY[$id]})"
            continue
        fi
        if [ "$rps" -gt "${BEST_RPS[$id]:-0}" ]; then
            BEST_RPS[$id]=$rps
            BEST_P50[$id]=$(field "$line" p50_us)
            BEST_P99[$id]=$(field "$line" p99_us)
            BEST_ERR[$id]=$errors
        fi
    done
done
cache_metrics() { { curl -s "http://127.0.0.1:$(($1 + 10))/metrics" || true; } | awk -v m="$2" '$1 == m { print $2 }'; }
AUTH_HITS=$(cache_metrics "$P_AUTH" wisp_token_cache_hits_total)
AUTH_MISSES=$(cache_metrics "$P_AUTH" wisp_token_cache_misses_total)

# ----------------------------------------------------------- fixed-rate run
log "fixed rate: $RATE req/s for ${RATE_DURATION}s, nginx direct and wisp (reused ES256 token)"
declare -A FR_P50 FR_P99 FR_OK
fixed_rate() { # id port [token file]
    local extra=()
    [ -n "${3:-}" ] && extra=(--token-file "$3")
    "$LOADGEN" --url "http://127.0.0.1:$2/api/orders" --rate "$RATE" --duration 1 --connections 32 "${extra[@]}" >/dev/null 2>&1 || true
    local line
    line=$("$LOADGEN" --url "http://127.0.0.1:$2/api/orders" --rate "$RATE" --duration "$RATE_DURATION" \
        --connections 32 "${extra[@]}" 2>"$WORK/loadgen-$1.err") && FR_OK[$1]=1 || FR_OK[$1]=
    FR_P50[$1]=$(field "$line" p50_us)
    FR_P99[$1]=$(field "$line" p99_us)
    log "  $1: $line"
}
fixed_rate direct "$P_NGINX"
fixed_rate wisp "$P_AUTH" "$WORK/token_es256.txt"

# ---------------------------------------------------------------------- RSS
log "RSS: a fresh wisp, idle, then after $FILL distinct tokens (each sent once)"
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# Of it, anonymous memory (heap, stacks: what the caches cost) and pages of
# files (the binary's code, shared and reclaimable under pressure).
anon_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"; }
file_kib() { awk '/^RssFile:|^RssShmem:/ { kib += $2 } END { print kib }' "/proc/$1/status"; }
start wisp_fill "$WISP" serve --config "$WORK/wisp-fill.yaml"
wait_http "http://127.0.0.1:$((P_FILL + 10))/readyz" 200 "wisp on $P_FILL"
sleep 1
RSS_IDLE=$(rss_kib "$PID_wisp_fill") ANON_IDLE=$(anon_kib "$PID_wisp_fill") FILE_IDLE=$(file_kib "$PID_wisp_fill")
FILL_OK=
"$LOADGEN" --url "http://127.0.0.1:$P_FILL/api/orders" --requests "$FILL" --connections 16 \
    --token-file "$WORK/tokens_es256_fill.txt" --max-time 600 >"$WORK/fill.out" 2>&1 && FILL_OK=1
log "  $(grep RESULT "$WORK/fill.out" || tail -1 "$WORK/fill.out")"
sleep 1
RSS_FILL=$(rss_kib "$PID_wisp_fill") ANON_FILL=$(anon_kib "$PID_wisp_fill") FILE_FILL=$(file_kib "$PID_wisp_fill")
FILL_ENTRIES=$(cache_metrics "$P_FILL" wisp_token_cache_entries)
FILL_BYTES=$(cache_metrics "$P_FILL" wisp_token_cache_bytes)

# ------------------------------------------------------------------- report
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
ratio() { # a b
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f×", a / b }'
}
ms() { [ -n "$1" ] && awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }' || printf '—'; }
target() { # label measured_ratio_or_value threshold op(ge|le) shown
    local verdict
    if [ -z "$2" ]; then
        verdict="not measured"
    elif awk -v v="$2" -v t="$3" -v op="$4" 'BEGIN { exit !(op == "ge" ? v >= t : v <= t) }'; then
        verdict="**met**"
    else
        verdict="**not met**"
    fi
    printf '| %s | %s | %s |\n' "$1" "$5" "$verdict"
}
raw_ratio() { # a b → plain number or empty
    if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then
        awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b }'
    fi
}

wisp_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Only changes to what the wisp binary is built from count as "uncommitted".
git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
    wisp_commit="$wisp_commit (with uncommitted changes to src/ or Cargo.*)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
nginx_version=$(nginx -v 2>&1 | sed 's/^nginx version: //')
wrk_version=$({ wrk -v 2>&1 || true; } | sed -n 1p | awk '{ print $1, $2 }')
{
    echo "# Load test results"
    echo
    echo "Produced by \`bash loadtests/run.sh\` (see [README.md](README.md) for what each scenario means)."
    echo "Everything ran on one machine: load generator, proxies and upstream share its cores, so compare"
    echo "the ratios within this run, not absolute numbers across machines or runs."
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: \`nproc\` = $(nproc), $cpu, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
    echo "- load average before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows here)"
    echo "- wisp $wisp_commit (release build, \`threads: 2\`, \`log.decisions: none\`); $nginx_version (upstream, \`return 200 \"ok\\n\"\`, workers: auto); $haproxy_version (\`nbthread 2\`); $wrk_version"
    echo "- wrk: $WRK_THREADS threads, $CONNECTIONS connections, ${WARMUP}s warm-up + ${DURATION}s measured per scenario, $ROUNDS interleaved rounds, best round kept; path \`/api/orders\`"
    echo
    echo "## Throughput"
    echo
    echo "| scenario | requests/s | × direct | × wisp no-auth | p50 | p99 | status |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r id label port script file <<<"$entry"
        if [ -n "${FAILED[$id]:-}" ]; then
            echo "| $label | — | — | — | — | — | **FAILED**: ${WHY[$id]} |"
        else
            echo "| $label | ${BEST_RPS[$id]:-} | $(ratio "${BEST_RPS[$id]:-}" "${BEST_RPS[direct]:-}") | $(ratio "${BEST_RPS[$id]:-}" "${BEST_RPS[wisp_public]:-}") | $(ms "${BEST_P50[$id]:-}") | $(ms "${BEST_P99[$id]:-}") | ok (all 2xx, ${BEST_ERR[$id]:-} socket errors) |"
        fi
    done
    echo
    echo "wrk's latencies above are under saturation (closed loop): they measure queueing, not the cost of a request."
    echo "Token cache on the cache-on wisp after its scenarios: ${AUTH_HITS:-?} hits, ${AUTH_MISSES:-?} misses."
    echo
    echo "## Where the time goes (diagnostic)"
    echo
    echo "Machine time per request is 1 / throughput (the whole machine: load generator, proxy and upstream)."
    echo "A proxy's no-auth row is its forwarding cost; the other rows add what authenticating costs it."
    echo
    echo "| scenario | µs per request | µs added over the same proxy without auth |"
    echo "|---|---:|---:|"
    for pair in "wisp_public|wisp_public" "wisp_es256|wisp_public" "wisp_rs256|wisp_public" \
        "wisp_rotating_nocache|wisp_public" "haproxy_plain|haproxy_plain" "haproxy_es256|haproxy_plain" \
        "haproxy_rs256|haproxy_plain" "haproxy_rotating|haproxy_plain"; do
        IFS='|' read -r id base <<<"$pair"
        [ -n "${BEST_RPS[$id]:-}" ] && [ -n "${BEST_RPS[$base]:-}" ] || continue
        label=$(printf '%s\n' "${SCENARIOS[@]}" | awk -F'|' -v id="$id" '$1 == id { print $2 }')
        awk -v l="$label" -v a="${BEST_RPS[$id]}" -v b="${BEST_RPS[$base]}" -v same="$([ "$id" = "$base" ] && echo 1)" \
            'BEGIN { printf "| %s | %.1f | %s |\n", l, 1e6 / a, (same ? "—" : sprintf("%.1f", 1e6 / a - 1e6 / b)) }'
    done
    echo
    echo "## Latency at a fixed rate ($RATE req/s, ${RATE_DURATION}s, \`loadgen\`, latency from each request's due time)"
    echo
    echo "| target | p50 | p99 | status |"
    echo "|---|---:|---:|---|"
    for id in direct wisp; do
        name=$([ $id = direct ] && echo "nginx direct" || echo "wisp, reused ES256 token, 50 policies")
        echo "| $name | $(ms "${FR_P50[$id]}") | $(ms "${FR_P99[$id]}") | $([ -n "${FR_OK[$id]}" ] && echo "ok (all 200)" || echo "**FAILED** (non-200 or errors)") |"
    done
    if [ -n "${FR_P50[wisp]}" ] && [ -n "${FR_P50[direct]}" ]; then
        echo "| **added by wisp** | $(ms $((FR_P50[wisp] - FR_P50[direct]))) | $(ms $((FR_P99[wisp] - FR_P99[direct]))) | |"
    fi
    echo
    echo "## Memory (wisp RSS, \`VmRSS\` from /proc)"
    echo
    echo "| state | RSS | of it anonymous | of it file pages (the binary) | cache |"
    echo "|---|---:|---:|---:|---|"
    echo "| idle, after start (50 policies, 2 keys) | $(mib "$RSS_IDLE") | $(mib "$ANON_IDLE") | $(mib "$FILE_IDLE") | empty |"
    echo "| after $FILL distinct tokens, each sent once | $(mib "$RSS_FILL") | $(mib "$ANON_FILL") | $(mib "$FILE_FILL") | ${FILL_ENTRIES:-?} entries, $(mib $((${FILL_BYTES:-0} / 1024))) weighed $([ -n "$FILL_OK" ] || echo "— **the fill run failed**: $(tail -1 "$WORK/fill.out")") |"
    echo
    echo "## Targets (issue #4)"
    echo
    echo "| target | measured | verdict |"
    echo "|---|---|---|"
    v=$(raw_ratio "${BEST_RPS[wisp_es256]:-}" "${BEST_RPS[wisp_public]:-}")
    target "cache hit ≥ 0.95× wisp no-auth" "$v" 0.95 ge "${v:-—}× (${BEST_RPS[wisp_es256]:-—} vs ${BEST_RPS[wisp_public]:-—} req/s)"
    v=$(raw_ratio "${BEST_RPS[wisp_es256]:-}" "${BEST_RPS[haproxy_es256]:-}")
    target "≥ 3× HAProxy jwt_verify, reused ES256 token" "$v" 3 ge "${v:-—}× (${BEST_RPS[wisp_es256]:-—} vs ${BEST_RPS[haproxy_es256]:-—} req/s)"
    v=$(raw_ratio "${BEST_RPS[wisp_rs256]:-}" "${BEST_RPS[haproxy_rs256]:-}")
    target "≥ 1.3× HAProxy jwt_verify, reused RS256 token" "$v" 1.3 ge "${v:-—}× (${BEST_RPS[wisp_rs256]:-—} vs ${BEST_RPS[haproxy_rs256]:-—} req/s)"
    v=$(raw_ratio "${BEST_RPS[wisp_rotating_nocache]:-}" "${BEST_RPS[haproxy_rotating]:-}")
    target "cold path (every token verified) ≥ 0.9× HAProxy, rotating ES256 tokens" "$v" 0.9 ge "${v:-—}× (${BEST_RPS[wisp_rotating_nocache]:-—} vs ${BEST_RPS[haproxy_rotating]:-—} req/s)"
    v=$(awk -v k="${RSS_IDLE:-}" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')
    target "RSS idle ≤ 25 MiB" "$v" 25 le "${v:-—} MiB"
    v=
    [ -n "$FILL_OK" ] && v=$(awk -v k="${RSS_FILL:-}" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }')
    target "RSS with $FILL cached tokens ≤ 64 MiB" "$v" 64 le "${v:-—} MiB (${FILL_ENTRIES:-?} entries cached)"
    echo
    echo "The two other targets of issue #4 (authorization at 1000 policies ≤ 2× at 10; cold path ≥ 0.85× the"
    echo "raw signature rate) are in-process measurements: see the criterion benches in \`benches/\`."
    echo
    echo "## Enforcement checks (before any load)"
    echo
    for s in "${SANITY[@]}"; do echo "- $s"; done
} >"$WORK/RESULTS.md"
cp "$WORK/RESULTS.md" "$RESULTS"
echo
cat "$RESULTS"
log "wrote $RESULTS"
