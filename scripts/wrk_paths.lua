-- Cycles through the request paths in WRK_PATHS (one per line), each thread from its own offset,
-- and prints the summary as JSON on completion.
local paths = {}
local counter = 0
local file = os.getenv("WRK_PATHS")

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)
end

function init(args)
  for line in io.lines(file) do
    paths[#paths + 1] = line
  end
  position = offset or 0
end

function request()
  position = position + 1
  return wrk.format("GET", paths[(position % #paths) + 1])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, errors.connect + errors.read + errors.write + errors.timeout, errors.status))
end
