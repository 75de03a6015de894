-- wrk script for bench/login.sh: like bench/callback.lua, for requests of any method.
--
--   wrk -t T -c C -d D -s bench/replay.lua http://127.0.0.1:PORT -- REQUESTS_FILE T
--
-- REQUESTS_FILE holds one request per line, `METHOD\tpath\tbody` (examples/bench_login.rs);
-- a POST body is sent as application/json.
-- Thread i (0-based) of T sends lines i, i+T, i+2T, ... so no two threads send the same
-- callback; a thread that runs out of lines starts again from its first (those repeats hit
-- wxunion's dedupe) and the number of such wraps is reported at the end.
-- Requests are formatted once at init so the client spends as little CPU as possible.
-- The last line printed is machine-readable: `BENCH key=value ...` (latencies in microseconds).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file = args[1] or error("usage: -- REQUESTS_FILE THREADS")
  local total = tonumber(args[2] or "1")
  local host = wrk.headers["Host"]
  local reqs = {}
  local n = 0
  local fh = assert(io.open(file, "r"))
  for line in fh:lines() do
    if n % total == id then
      local t1 = line:find("\t", 1, true)
      local t2 = t1 and line:find("\t", t1 + 1, true)
      if t2 then
        local method = line:sub(1, t1 - 1)
        local path = line:sub(t1 + 1, t2 - 1)
        local body = line:sub(t2 + 1)
        if method == "POST" then
          reqs[#reqs + 1] = wrk.format("POST", path,
            { ["Content-Type"] = "application/json", ["Host"] = host }, body)
        else
          reqs[#reqs + 1] = wrk.format(method, path, { ["Host"] = host })
        end
      end
    end
    n = n + 1
  end
  fh:close()
  if #reqs == 0 then error("thread " .. id .. ": no requests loaded from " .. file) end
  requests_ = reqs
  next_ = 1
  wraps = 0
  loaded = #reqs
end

-- A 200 can still be a failure: a GraphQL error, or a WeChat errcode other than 0. Those are
-- counted (and the first one kept) so that a run of failing requests cannot pass as fast.
failed = 0
first_failure = ""
function response(status, headers, body)
  if body and (body:find('"errors"', 1, true) or body:find('"errcode":%-?[1-9]')) then
    failed = failed + 1
    if first_failure == "" then first_failure = body:sub(1, 300) end
  end
end

function request()
  local r = requests_[next_]
  next_ = next_ + 1
  if next_ > loaded then
    next_ = 1
    wraps = wraps + 1
  end
  return r
end

function done(summary, latency, requests)
  local wrapped, loaded_total, failed_total, first = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    wrapped = wrapped + (t:get("wraps") or 0)
    loaded_total = loaded_total + (t:get("loaded") or 0)
    failed_total = failed_total + (t:get("failed") or 0)
    if first == "" then first = t:get("first_failure") or "" end
  end
  if first ~= "" then io.write("first failure: " .. first .. "\n") end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d seconds=%.3f rps=%.1f p50=%d p90=%d p99=%d max=%d " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d loaded=%d wraps=%d failed=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout, loaded_total, wrapped, failed_total))
end
