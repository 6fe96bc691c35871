-- Distinct bearer tokens, one a line in the file named by WISP_TOKENS_FILE,
-- cycled request after request. Every request is pre-built in init(), so the
-- per-request Lua cost is one table lookup. Thread k starts k/threads of the
-- way into the list, so threads do not send the same token at the same time.
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local requests_ = {}
local n, i = 0, 0

function init(args)
  local path = assert(os.getenv("WISP_TOKENS_FILE"), "WISP_TOKENS_FILE unset")
  for line in io.lines(path) do
    if #line > 0 then
      n = n + 1
      requests_[n] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. line })
    end
  end
  assert(n > 0, "no tokens in " .. path)
  local threads = tonumber(os.getenv("WISP_WRK_THREADS") or "2")
  i = math.floor(n * (thread_index or 0) / threads)
end

function request()
  i = i % n + 1
  return requests_[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
