-- wrk script for bench/serve: POST one single-row `dataframe_split` body (BENCH_BODY_FILE) to
-- /invocations over keep-alive connections.
--
-- done() prints one line `BENCH_JSON {...}`: requests, non-2xx count (wrk's `errors.status`,
-- every status >= 400), socket errors, duration, and latency percentiles in microseconds
-- (wrk's own histogram, every request). No response() hook by default: calling Lua for each
-- response would cost wrk CPU on this shared machine; with BENCH_SAMPLE_ERRORS=1 the first
-- three non-2xx responses are kept and printed between BENCH_ERRORS_BEGIN/END.

local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "r"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = "/invocations"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  samples = {}
end

if os.getenv("BENCH_SAMPLE_ERRORS") == "1" then
  function response(status, headers, resp_body)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
      if #samples < 3 then
        table.insert(samples, status .. " " .. string.sub(resp_body or "", 1, 300))
      end
    end
  end
end

function done(summary, latency, requests)
  local seen = {}
  for _, t in ipairs(threads) do
    for _, s in ipairs(t:get("samples") or {}) do
      if #seen < 3 then table.insert(seen, s) end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "non2xx": %d, "socket_errors": %d, "duration_us": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
  io.write("BENCH_ERRORS_BEGIN\n")
  for _, s in ipairs(seen) do io.write(s, "\n") end
  io.write("BENCH_ERRORS_END\n")
end
