-- wrk script for the L1 benchmark (bench/l1/run.sh).
--
--   STRATA_BENCH_MODE=post  POST /v1/sessions/{id}/turns with a small JSON body
--   STRATA_BENCH_MODE=get   GET  /v1/sessions/{id}
--
-- Requests are spread uniformly at random over STRATA_BENCH_SESSIONS session
-- ids ("bench-0" ...), each always written by its own user ("bench-user-N"),
-- so no request is refused with 409. At the end one machine-readable line is
-- printed for run.sh:
--   RESULT mode=post requests=N rps=R p50_ms=X p99_ms=Y errors=E non2xx=S

local mode = os.getenv("STRATA_BENCH_MODE") or "post"
local n_sessions = tonumber(os.getenv("STRATA_BENCH_SESSIONS") or "1000")
local content = os.getenv("STRATA_BENCH_CONTENT")
    or "I would like to book a table for two near the office tomorrow evening, please."

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
    table.insert(threads, thread)
end

function init(args)
    math.randomseed(os.time() * 1000 + (tid or 0))
    -- Pre-build every request once: the benchmark measures the server, not Lua.
    reqs = {}
    local headers = { ["Content-Type"] = "application/json" }
    for i = 0, n_sessions - 1 do
        local sid = "bench-" .. i
        if mode == "get" then
            reqs[i] = wrk.format("GET", "/v1/sessions/" .. sid)
        else
            local body = '{"user_id":"bench-user-' .. i .. '","role":"user","content":"'
                .. content .. '"}'
            reqs[i] = wrk.format("POST", "/v1/sessions/" .. sid .. "/turns", headers, body)
        end
    end
end

function request()
    return reqs[math.random(0, n_sessions - 1)]
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "RESULT mode=%s requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
        mode, summary.requests, summary.requests / secs,
        latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0,
        e.connect + e.read + e.write + e.timeout, e.status))
end
