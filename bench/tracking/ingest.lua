-- wrk script for the ingest phases of bench/tracking.
--
--   BENCH_KIND=metric  POST /api/2.0/mlflow/runs/log-metric, one metric per request
--   BENCH_KIND=batch   POST /api/2.0/mlflow/runs/log-batch, BENCH_BATCH metrics per request:
--                      BENCH_KEYS distinct keys (m0, m1, ...) x BENCH_BATCH/BENCH_KEYS steps
--
-- BENCH_RUN_IDS is a comma-separated list of runs. With BENCH_ROTATE=N > 0 the script moves to
-- the next run every N requests (cycling), so a fast server does not pile a deeper metric history
-- into one run than a slow one does. Every metric carries a fresh step (per-thread ranges), so no
-- two requests log an identical metric row (MLflow's metrics primary key covers key, timestamp,
-- step, value; a duplicate would take its slower IntegrityError path). wrk keeps every
-- connection alive, like the mlflow client's requests.Session.
--
-- done() prints one line `BENCH_JSON {...}` with the totals, then the first few non-2xx
-- responses (status and body) between BENCH_ERRORS_BEGIN / BENCH_ERRORS_END.

local kind = os.getenv("BENCH_KIND") or "metric"
local run_ids = {}
for id in string.gmatch(os.getenv("BENCH_RUN_IDS") or "", "[^,]+") do
  table.insert(run_ids, id)
end
if #run_ids == 0 then error("BENCH_RUN_IDS is not set") end
local rotate = tonumber(os.getenv("BENCH_ROTATE") or "0")
local nbatch = tonumber(os.getenv("BENCH_BATCH") or "1000")
local nkeys = tonumber(os.getenv("BENCH_KEYS") or tostring(nbatch))
if nbatch % nkeys ~= 0 then error("BENCH_BATCH must be a multiple of BENCH_KEYS") end
local nsteps = math.floor(nbatch / nkeys)
local ts = os.getenv("BENCH_TS") or "1700000000000"

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local path
local prefix = {}
local counter = 0
local base = 0
errors = 0
first_errors = ""

function init(args)
  base = (tid or 0) * 100000000
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if kind == "metric" then
    path = "/api/2.0/mlflow/runs/log-metric"
  else
    path = "/api/2.0/mlflow/runs/log-batch"
    for k = 1, nkeys do
      prefix[k] = string.format('{"key":"m%d","value":%.4f,"timestamp":%s,"step":', k - 1, (k - 1) / nkeys, ts)
    end
  end
end

function request()
  counter = counter + 1
  local run_id = run_ids[1]
  if rotate > 0 then
    run_id = run_ids[math.floor((counter - 1) / rotate) % #run_ids + 1]
  end
  local body
  if kind == "metric" then
    body = string.format(
      '{"run_id":"%s","run_uuid":"%s","key":"loss","value":%.6f,"timestamp":%s,"step":%d}',
      run_id, run_id, (counter % 1000) / 1000, ts, base + counter)
  else
    local parts = { '{"run_id":"', run_id, '","metrics":[' }
    for s = 0, nsteps - 1 do
      local step = string.format("%d", base + (counter - 1) * nsteps + s)
      for k = 1, nkeys do
        parts[#parts + 1] = prefix[k]
        parts[#parts + 1] = step
        parts[#parts + 1] = "},"
      end
    end
    parts[#parts] = "}"
    parts[#parts + 1] = "]}"
    body = table.concat(parts)
  end
  return wrk.format(nil, path, nil, body)
end

function response(status, headers, body)
  if status < 200 or status >= 300 then
    errors = errors + 1
    if errors <= 3 then
      first_errors = first_errors .. path .. " -> HTTP " .. status .. ": " .. string.sub(body or "", 1, 400) .. "\n"
    end
  end
end

function done(summary, latency, requests)
  local non2xx, msgs = 0, ""
  for _, t in ipairs(threads) do
    non2xx = non2xx + (t:get("errors") or 0)
    local m = t:get("first_errors")
    if m then msgs = msgs .. m end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, non2xx, e.connect, e.read, e.write, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(99), latency.max))
  io.write("BENCH_ERRORS_BEGIN\n" .. msgs .. "BENCH_ERRORS_END\n")
end
