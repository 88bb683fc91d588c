-- wrk script of bench/run.sh --peer: GETs of uniformly random keys <path-prefix><0..keys-1>.
--   wrk -t T -c C -d S -s get.lua http://host:port -- <path-prefix> <keys>
-- The requests are formatted once per thread (wrk's own CPU shares the 2 cores with the
-- server measured); done() prints one line "wrk_csv,<qps>,<p50 ms>,<p99 ms>,<requests>,<errors>"
-- where errors are connect/read/write/timeout errors plus non-2xx/3xx answers (a 404 for a
-- key the store must hold is an error here).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local reqs = {}
function init(args)
  local prefix, keys = args[1], tonumber(args[2])
  math.randomseed(os.time() * 1000 + id)
  for i = 0, keys - 1 do
    reqs[i + 1] = wrk.format("GET", prefix .. i)
  end
end

function request()
  return reqs[math.random(#reqs)]
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("wrk_csv,%.1f,%.3f,%.3f,%d,%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, errors))
end
