-- A fixed request (the URL given to wrk), e.g. GET /healthz: only adds the
-- machine-readable summary line of common.lua.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
request = nil -- no prebuilt list: wrk sends its one static request for the URL
