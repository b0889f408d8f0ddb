-- wrk script: each request GETs a random path from a file, one path per line; with
-- "in-order" the paths are asked in order from a seeded random place, wrapping around, so
-- that with at least as many paths as requests none is asked twice (an uncached load).
--   wrk -t1 -cN -dSs -s random_paths.lua http://HOST:PORT -- PATHS_FILE SEED [in-order]
-- At the end it prints one line, "WRKJSON {...}": counts, errors and latency percentiles
-- in milliseconds, for bench_service.py to read.
local paths = {}
local in_order = false
local next_index = 1

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  math.randomseed(tonumber(args[2] or "1"))
  in_order = args[3] == "in-order"
  next_index = math.random(#paths)
end

function request()
  if not in_order then
    return wrk.format("GET", paths[math.random(#paths)])
  end
  local path = paths[next_index]
  next_index = next_index % #paths + 1
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_s": %.6f, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"p50": %.3f, "p95": %.3f, "p99": %.3f, "max": %.3f, "mean": %.3f}\n',
    summary.requests, summary.duration / 1e6, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000))
end
