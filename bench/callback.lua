-- wrk script for bench/callback.sh.
--
--   wrk -t T -c C -d D -s bench/callback.lua http://127.0.0.1:PORT -- REQUESTS_FILE T [READY_FILE]
--
-- REQUESTS_FILE holds one request per line, `<path?query>\t<body>` (examples/bench_requests.rs),
-- each sent as a POST of text/xml. Threads, wraps, the start barrier and the summary line:
-- bench/wrk_common.lua.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

function init(args)
  common.load(args, function(line, host)
    local tab = line:find("\t", 1, true)
    if not tab then return nil end
    return wrk.format("POST", line:sub(1, tab - 1),
      { ["Content-Type"] = "text/xml", ["Host"] = host }, line:sub(tab + 1))
  end)
end

function done(summary, latency, requests)
  common.report(summary, latency, "")
end
