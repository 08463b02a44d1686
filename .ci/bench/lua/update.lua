-- Authenticated PUT /results/{year}/{roll} with random marks, on roll numbers
-- in [roll_min, roll_max] (the benchmark's own rows), paced: each connection
-- waits pace_ms between requests so writes stay a fixed share of the load.
--   wrk -s update.lua URL -- year=2025 roll_min=.. roll_max=.. token=.. pace_ms=20
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local year, lo, hi, pace, headers

function init(args)
  local a = parse_args(args)
  year = assert(tonumber(a.year), "year=")
  lo = assert(tonumber(a.roll_min), "roll_min=")
  hi = assert(tonumber(a.roll_max), "roll_max=")
  pace = tonumber(a.pace_ms) or 0
  headers = {
    ["Authorization"] = "Bearer " .. assert(a.token, "token="),
    ["Content-Type"] = "application/json",
  }
  seed_random()
end

function request()
  local path = string.format("/results/%d/%d", year, math.random(lo, hi))
  return wrk.format("PUT", path, headers, string.format('{"marks": %d}', math.random(0, 100)))
end

function delay()
  return pace
end
