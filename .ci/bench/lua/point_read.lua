-- GET /results/{year}/{roll} for uniformly random roll numbers in
-- [roll_min, roll_max] (every one of them exists in the seeded year).
--   wrk -s point_read.lua URL -- year=2025 roll_min=100000001 roll_max=100200000 [prebuilt=50000]
--
-- Each thread draws `prebuilt` random roll numbers up front and formats their
-- requests once, then hands them out in turn: the draw is the same uniform
-- sample, but formatting a request per call would cost the load generator
-- about as much CPU as the function spends serving it, on the same cores.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  local a = parse_args(args)
  local year = assert(tonumber(a.year), "year=")
  local lo = assert(tonumber(a.roll_min), "roll_min=")
  local hi = assert(tonumber(a.roll_max), "roll_max=")
  local n = tonumber(a.prebuilt) or 50000
  seed_random()
  for k = 1, n do
    prebuilt[k] = wrk.format("GET", string.format("/results/%d/%d", year, math.random(lo, hi)))
  end
end
