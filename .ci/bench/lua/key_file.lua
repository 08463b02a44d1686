-- GET /results/{year}/{roll} for the roll numbers of a key file, in the
-- file's order (one roll number a line), looping back to the start.
--   wrk -s key_file.lua URL -- year=2025 keys=/tmp/keys.txt threads=2 [start=0]
-- start=N begins after the first N requests of the file (e.g. where an
-- earlier run of the same file stopped).
--
-- With T threads, thread k sends lines k, k+T, k+2T, ...: the threads move
-- through the file side by side, so the requests as a whole keep its order
-- (the time order of the crowd the file describes). Requests are formatted
-- once up front, as in point_read.lua.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  local a = parse_args(args)
  local year = assert(tonumber(a.year), "year=")
  local path = assert(a.keys, "keys=")
  local stride = tonumber(a.threads) or 1
  local k = ((thread_id or 1) - 1) % stride
  local n = 0
  local line_no = 0
  for line in io.lines(path) do
    if line_no % stride == k then
      n = n + 1
      prebuilt[n] = wrk.format("GET", string.format("/results/%d/%s", year, line))
    end
    line_no = line_no + 1
  end
  assert(n > 0, "no keys for this thread in " .. path)
  prebuilt_last = math.floor((tonumber(a.start) or 0) / stride) % n
end
