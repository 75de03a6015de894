-- wrk script for bench/login.sh: like bench/callback.lua, for requests of any method.
--
--   wrk -t T -c C -d D -s bench/replay.lua http://127.0.0.1:PORT -- REQUESTS_FILE T [READY_FILE]
--
-- REQUESTS_FILE holds one request per line, `METHOD\tpath\tbody` (examples/bench_login.rs);
-- a POST body is sent as application/json. Threads, wraps, the start barrier and the summary
-- line: bench/wrk_common.lua; the summary adds `failed=N`.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  common.load(args, function(line, host)
    local t1 = line:find("\t", 1, true)
    local t2 = t1 and line:find("\t", t1 + 1, true)
    if not t2 then return nil end
    local method = line:sub(1, t1 - 1)
    local path = line:sub(t1 + 1, t2 - 1)
    if method == "POST" then
      return wrk.format("POST", path,
        { ["Content-Type"] = "application/json", ["Host"] = host }, line:sub(t2 + 1))
    end
    return wrk.format(method, path, { ["Host"] = host })
  end)
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

function done(summary, latency, requests)
  local failed_total, first = 0, ""
  common.each_thread(function(t)
    failed_total = failed_total + (t:get("failed") or 0)
    if first == "" then first = t:get("first_failure") or "" end
  end)
  if first ~= "" then io.write("first failure: " .. first .. "\n") end
  common.report(summary, latency, string.format(" failed=%d", failed_total))
end
