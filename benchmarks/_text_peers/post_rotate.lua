-- wrk script for benchmarks/transformers.py: POST the JSON bodies in the file named by
-- $BENCH_BODY_FILE (one per line) in turn, so that consecutive requests carry different texts.
-- The status counts and the JSON summary line are post.lua's (loaded first; its one-body
-- request is replaced by request() below).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "../_serving_peers/post.lua")

local bodies = {}
for line in io.lines(os.getenv("BENCH_BODY_FILE")) do
  if #line > 0 then table.insert(bodies, line) end
end
local counter = 0

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[counter])
end
