-- GET /results/{year}/{roll} for uniformly random roll numbers in
-- [roll_min, roll_max] (every one of them exists in the seeded year).
--   wrk -s point_read.lua URL -- year=2025 roll_min=100000001 roll_max=100200000
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local year, lo, hi

function init(args)
  local a = parse_args(args)
  year = assert(tonumber(a.year), "year=")
  lo = assert(tonumber(a.roll_min), "roll_min=")
  hi = assert(tonumber(a.roll_max), "roll_max=")
  seed_random()
end

function request()
  return wrk.format("GET", string.format("/results/%d/%d", year, math.random(lo, hi)))
end
