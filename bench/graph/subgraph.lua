-- wrk script for the graph benchmark over HTTP (bench/graph/http_bench.sh).
--
-- Two modes, chosen by STRATA_BENCH_MODE:
--
--   query  GET /v1/graph/subgraph?center=n:<i>&depth=D&limit=L&direction=DIR
--          Centres come from STRATA_BENCH_CENTRES, a file of node numbers, one
--          a line (http_bench.sh writes the same centres bench_graph.c draws);
--          each request picks one of them uniformly at random. Knobs:
--          STRATA_BENCH_DEPTH (2), STRATA_BENCH_LIMIT (1000),
--          STRATA_BENCH_DIRECTION (both).
--
--   load   Replays STRATA_BENCH_FILE, one request a line: "<path>\t<json body>",
--          each sent once as a PUT with Content-Type application/json. wrk
--          thread t (of STRATA_BENCH_THREADS) sends lines t, t+T, t+2T, ...
--          over its connections and stops itself once every one of its lines
--          has been answered, appending its number to STRATA_BENCH_DONE. (wrk
--          has no "run N requests" option: run it with a long -d as a cap and
--          send it SIGINT once that file has a line per thread.) Connections
--          that ask for more after the last line get GET /healthz, whose
--          answers are not counted. A lost line (a wrk version that draws its
--          probe request differently) shows as ok < sent: http_bench.sh fails.
--
-- At the end one machine-readable line is printed for http_bench.sh:
--   RESULT mode=query requests=N rps=R p50_ms=X p99_ms=Y p999_ms=Z mean_ms=M
--          bytes_per_req=B errors=E non2xx=S
--   RESULT mode=load sent=N ok=K bad=B secs=T rps=R errors=E

local mode = os.getenv("STRATA_BENCH_MODE") or "query"

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
    table.insert(threads, thread)
end

-- ---- query -------------------------------------------------------------------

local centres, n_centres, depth, limit, direction

local function init_query()
    local path = os.getenv("STRATA_BENCH_CENTRES")
    depth = os.getenv("STRATA_BENCH_DEPTH") or "2"
    limit = os.getenv("STRATA_BENCH_LIMIT") or "1000"
    direction = os.getenv("STRATA_BENCH_DIRECTION") or "both"
    centres = {}
    n_centres = 0
    local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
    for line in f:lines() do
        -- Pre-build every request: the benchmark measures the server, not Lua.
        centres[n_centres] = wrk.format("GET", "/v1/graph/subgraph?center=n:" .. line
            .. "&depth=" .. depth .. "&limit=" .. limit .. "&direction=" .. direction)
        n_centres = n_centres + 1
    end
    f:close()
    assert(n_centres > 0, "no centres in " .. path)
end

-- ---- load --------------------------------------------------------------------

-- Globals, not locals: done() reads n_lines, ok and bad with thread:get().
lines, n_lines, next_line, answered, ok, bad = nil, 0, 0, 0, 0, 0
-- What request() returns once this thread's lines are all sent, and for wrk's
-- probe call (see request()).
health_req = wrk.format("GET", "/healthz")
local json_headers = { ["Content-Type"] = "application/json" }

local function init_load()
    local path = os.getenv("STRATA_BENCH_FILE")
    local n_threads = tonumber(os.getenv("STRATA_BENCH_THREADS") or "1")
    local me = (tid or 1) - 1
    lines = {}
    n_lines = 0
    local i = 0
    local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
    for line in f:lines() do
        if i % n_threads == me then
            lines[n_lines] = line
            n_lines = n_lines + 1
        end
        i = i + 1
    end
    f:close()
    verify_call = (tid == 1)
    next_line = 0
    answered = 0
    ok = 0
    bad = 0
end

function init(args)
    math.randomseed(os.time() * 1000 + (tid or 0))
    if mode == "load" then
        init_load()
    else
        init_query()
    end
end

function request()
    if mode ~= "load" then
        return centres[math.random(0, n_centres - 1)]
    end
    if verify_call then
        -- wrk 4.1 calls request() once on the first thread's state right after
        -- init(), to count requests per write, and never sends the answer.
        verify_call = false
        return health_req
    end
    if next_line >= n_lines then
        return health_req
    end
    local line = lines[next_line]
    next_line = next_line + 1
    local tab = string.find(line, "\t", 1, true)
    return wrk.format("PUT", string.sub(line, 1, tab - 1), json_headers,
                      string.sub(line, tab + 1))
end

-- This thread has had every answer: stop its event loop and say so in
-- STRATA_BENCH_DONE (wrk's main thread sleeps for -d regardless; the caller
-- sends it SIGINT once every thread has written its line).
local finished = false
function finish()
    if not finished then
        finished = true
        local path = os.getenv("STRATA_BENCH_DONE")
        if path then
            local f = io.open(path, "a")
            f:write(tostring(tid) .. "\n")
            f:close()
        end
    end
    wrk.thread:stop()
end

-- Only defined in load mode: wrk then skips Lua work per response for queries.
if mode == "load" then
    function response(status, headers, body)
        -- /healthz answers {"status":"ok",...}; node and edge PUTs do not.
        if string.sub(body, 1, 10) == '{"status":' then
            if answered >= n_lines then
                finish()
            end
            return
        end
        answered = answered + 1
        if status == 200 or status == 201 then
            ok = ok + 1
        else
            bad = bad + 1
            if bad <= 5 then
                io.stderr:write("load: HTTP " .. status .. ": " .. body .. "\n")
            end
        end
        if answered >= n_lines then
            finish()
        end
    end
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    local errors = e.connect + e.read + e.write + e.timeout
    if mode == "load" then
        local sent, n_ok, n_bad = 0, 0, 0
        for _, t in ipairs(threads) do
            sent = sent + t:get("n_lines")
            n_ok = n_ok + t:get("ok")
            n_bad = n_bad + t:get("bad")
        end
        io.write(string.format("RESULT mode=load sent=%d ok=%d bad=%d secs=%.2f rps=%.1f errors=%d\n",
            sent, n_ok, n_bad, secs, (n_ok + n_bad) / secs, errors))
        return
    end
    io.write(string.format(
        "RESULT mode=query requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f"
            .. " mean_ms=%.3f bytes_per_req=%.0f errors=%d non2xx=%d\n",
        summary.requests, summary.requests / secs,
        latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0,
        latency:percentile(99.9) / 1000.0, latency.mean / 1000.0,
        summary.bytes / math.max(summary.requests, 1), errors, e.status))
end
