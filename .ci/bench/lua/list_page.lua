-- GET /results?exam_year=Y&after=A&limit=N for a random keyset page of the
-- seeded year: `after` is the last roll number of a random earlier page, the
-- value the previous page's `next_after` would have carried (the seeded roll
-- numbers are dense, so page k starts after roll_min - 1 + k * limit).
--   wrk -s list_page.lua URL -- year=2025 roll_min=100000001 roll_max=100200000 limit=100
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local year, lo, pages, limit

function init(args)
  local a = parse_args(args)
  year = assert(tonumber(a.year), "year=")
  lo = assert(tonumber(a.roll_min), "roll_min=")
  local hi = assert(tonumber(a.roll_max), "roll_max=")
  limit = tonumber(a.limit) or 100
  pages = math.floor((hi - lo + 1) / limit)
  seed_random()
end

function request()
  local after = lo - 1 + math.random(0, pages - 1) * limit
  return wrk.format("GET", string.format("/results?exam_year=%d&after=%d&limit=%d", year, after, limit))
end
