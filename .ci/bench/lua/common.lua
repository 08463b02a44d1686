-- Shared by every wrk script of `make bench`: numbers each thread, seeds its
-- random generator, and prints one machine-readable summary line at the end.
--
-- wrk calls setup(thread) once per thread (in the main Lua state) before
-- that thread's init(args); `thread:set` defines globals in the thread's own
-- state, so `thread_id` is visible to init/request there.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

-- Seeds math.random per thread so threads do not replay the same sequence.
function seed_random()
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919 + math.floor(os.clock() * 1e6))
  -- LuaJIT's first values after seeding are poorly mixed: discard a few.
  for _ = 1, 10 do math.random() end
end

-- Scripts that format their requests once up front put them in `prebuilt`
-- (in init); this request() hands them out in turn after `prebuilt_last`
-- (0: from the first), starting again after the last. Scripts that build
-- each request themselves define their own.
prebuilt = {}
prebuilt_last = 0

function request()
  prebuilt_last = prebuilt_last % #prebuilt + 1
  return prebuilt[prebuilt_last]
end

-- Parses "key=value" command-line arguments (after `--`) into a table.
function parse_args(args)
  local out = {}
  for _, arg in ipairs(args) do
    local k, v = string.match(arg, "^([%w_]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

-- One JSON line the benchmark driver parses (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  local extra = {}
  for _, t in ipairs(threads) do
    local n = t:get("bench_counter")
    if n then table.insert(extra, tostring(n)) end
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"threads":%d,"thread_counters":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    #threads, table.concat(extra, ",")))
end
