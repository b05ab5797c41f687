-- Sends the request paths in WRK_PATHS (one per line) in order; with WRK_THREADS threads, thread k
-- takes paths k, k + WRK_THREADS, ... so no two threads send the same part of the stream (which
-- would turn one thread's requests into cache hits for the other). Prints the summary as JSON.
local paths = {}
local counter = 0
local file = os.getenv("WRK_PATHS")
local stride = tonumber(os.getenv("WRK_THREADS") or "1")

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end

function init(args)
  for line in io.lines(file) do
    paths[#paths + 1] = line
  end
  position = index or 0
end

function request()
  local path = paths[(position % #paths) + 1]
  position = position + stride
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
