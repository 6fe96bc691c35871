-- One reused bearer token, read from the file named by WISP_TOKEN_FILE (first
-- line). Set once in wrk.headers: wrk keeps its static request.
local f = assert(io.open(assert(os.getenv("WISP_TOKEN_FILE"), "WISP_TOKEN_FILE unset"), "r"))
local token = f:read("*l")
f:close()
wrk.headers["Authorization"] = "Bearer " .. token

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
