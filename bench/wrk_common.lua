-- What bench/callback.lua and bench/replay.lua share, loaded by each with `dofile`: loading a
-- thread's share of a requests file, replaying it, the start barrier and the summary line.
--
-- The scripts take `-- REQUESTS_FILE THREADS [READY_FILE]`. Thread i (0-based) of T sends
-- lines i, i+T, i+2T, ... so no two threads send the same request; a thread that runs out of
-- lines starts again from its first, and the number of such wraps is reported at the end.
-- Requests are formatted once, when a thread loads them, so the client spends as little CPU as
-- possible during the run.
--
-- The start barrier (READY_FILE): wrk loads each thread's script and starts that thread at
-- once, one thread after the other, and times the run from after the last one. A thread that
-- loaded its requests first would send for as long as the later ones take to load (seconds,
-- for a few hundred MB of requests), and those requests would count within a run time that
-- leaves those seconds out. So each thread's first request waits until the last thread has
-- loaded its requests and written READY_FILE (which must not exist before).
--
-- The summary, printed last, is machine-readable: `BENCH key=value ...` (latencies in
-- microseconds).

local ffi = require("ffi")
ffi.cdef [[ int usleep(unsigned int usec); ]]

local common = {}
local threads = {}
local counter = 0

-- wrk calls `setup` in its main Lua state once per thread, before the thread's `init`.
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- Loads this thread's share of the requests file given in `args`; `format(line, host)` turns
-- a line into a request (`wrk.format`), or nil to skip it.
function common.load(args, format)
  local file = args[1] or error("usage: -- REQUESTS_FILE THREADS [READY_FILE]")
  local total = tonumber(args[2] or "1")
  local host = wrk.headers["Host"]
  local reqs = {}
  local n = 0
  local fh = assert(io.open(file, "r"))
  for line in fh:lines() do
    if n % total == id then
      reqs[#reqs + 1] = format(line, host)
    end
    n = n + 1
  end
  fh:close()
  if #reqs == 0 then error("thread " .. id .. ": no requests loaded from " .. file) end
  requests_ = reqs
  next_ = 1
  wraps = 0
  loaded = #reqs
  ready_file = args[3]
  -- wrk's main thread calls thread 0's `request` once, right after its `init`, to check the
  -- request it makes (`script_verify_request`): that call must not wait.
  being_checked = id == 0
  if ready_file and id == total - 1 then
    local f = assert(io.open(ready_file, "w"))
    f:close()
  end
end

local function wait_until_ready()
  while true do
    local f = io.open(ready_file, "r")
    if f then
      f:close()
      return
    end
    ffi.C.usleep(1000)
  end
end

function request()
  if being_checked then
    being_checked = false
  elseif ready_file then
    wait_until_ready()
    ready_file = nil
  end
  local r = requests_[next_]
  next_ = next_ + 1
  if next_ > loaded then
    next_ = 1
    wraps = wraps + 1
  end
  return r
end

-- Calls `f(thread)` for every thread (in `done`, to sum what the threads kept).
function common.each_thread(f)
  for _, t in ipairs(threads) do f(t) end
end

-- Prints the summary line; `extra` (may be empty) is appended to it, e.g. " failed=3".
function common.report(summary, latency, extra)
  local wrapped, loaded_total = 0, 0
  common.each_thread(function(t)
    wrapped = wrapped + (t:get("wraps") or 0)
    loaded_total = loaded_total + (t:get("loaded") or 0)
  end)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f p50=%d p90=%d p99=%d max=%d " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d loaded=%d wraps=%d%s\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout, loaded_total, wrapped, extra))
end

return common
