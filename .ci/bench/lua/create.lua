-- Authenticated POST /results of new rows: roll numbers base + thread_id *
-- 10^7 + n, unique per thread and run (the driver deletes base.. afterwards),
-- paced like update.lua.
--   wrk -s create.lua URL -- year=2025 base=500000000000 token=.. pace_ms=20
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local year, base, pace, headers
bench_counter = 0

function init(args)
  local a = parse_args(args)
  year = assert(tonumber(a.year), "year=")
  base = assert(tonumber(a.base), "base=") + thread_id * 10000000
  pace = tonumber(a.pace_ms) or 0
  headers = {
    ["Authorization"] = "Bearer " .. assert(a.token, "token="),
    ["Content-Type"] = "application/json",
  }
end

function request()
  bench_counter = bench_counter + 1
  return wrk.format("POST", "/results", headers, string.format(
    '{"roll_number": %d, "exam_year": %d, "marks": %d}', base + bench_counter, year, bench_counter % 101))
end

function delay()
  return pace
end
