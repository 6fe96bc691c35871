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

# write_policies DIR: the schema and the load tests' 50 policies, with
# `when` clauses on sub prefixes and tags; exactly one (p37) permits the
# tokens' sub (acme:frontend:*).
write_policies() {
    mkdir -p "$1"
    cp "$ROOT/policies/wisp.cedarschema" "$1/"
    local i sub tag
    for i in $(seq -w 0 49); do
        if [ "$i" = 37 ]; then sub="acme:frontend:*" tag="tag:prod"; else sub="acme:svc$i:*" tag="tag:team$i"; fi
        cat <<POLICY
@id("p$i")
permit (principal, action in Action::"read", resource)
when { principal.sub like "$sub" && principal.tags.contains("$tag") && resource.path like "/api/*" };

POLICY
    done >"$1/load.cedar"
}

# write_nginx_conf PORT WORKERS: the upstream, `return 200 "ok\n"` on
# 127.0.0.1:PORT, into $WORK/nginx.conf (state under $WORK/nginx).
write_nginx_conf() {
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx.conf" <<NGINX
worker_processes $2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:$1;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
NGINX
}

# haproxy_base NGINX_PORT: HAProxy's global and defaults sections (2
# threads, like every proxy measured) and the `nginx` backend on
# 127.0.0.1:NGINX_PORT; frontends follow.
haproxy_base() {
    cat <<EOF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
backend nginx
  server nginx 127.0.0.1:$1
EOF
}
