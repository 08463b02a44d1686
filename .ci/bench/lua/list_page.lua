-- GET /results?exam_year=Y&after=A&limit=N for a random keyset page of the
-- seeded year: `after` is the last roll number of a random earlier page, the
-- value the previous page's `next_after` would have carried (the seeded roll
-- numbers are dense, so page k starts after roll_min - 1 + k * limit).
--   wrk -s list_page.lua URL -- year=2025 roll_min=100000001 roll_max=100200000 limit=100 token=READ_TOKEN [prebuilt=20000]
-- (listing needs a read token: token= is sent as Authorization: Bearer)
-- Requests are drawn and formatted up front, as in point_read.lua.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  local a = parse_args(args)
  local year = assert(tonumber(a.year), "year=")
  local lo = assert(tonumber(a.roll_min), "roll_min=")
  local hi = assert(tonumber(a.roll_max), "roll_max=")
  local limit = tonumber(a.limit) or 100
  local headers = {}
  if a.token then headers["Authorization"] = "Bearer " .. a.token end
  local pages = math.floor((hi - lo + 1) / limit)
  local n = tonumber(a.prebuilt) or 20000
  seed_random()
  for k = 1, n do
    local after = lo - 1 + math.random(0, pages - 1) * limit
    prebuilt[k] = wrk.format("GET", string.format("/results?exam_year=%d&after=%d&limit=%d", year, after, limit),
                             headers)
  end
end
