-- wrk script for tests/reliability/test_load_through_change.py.
--
-- Alternates single-row POSTs to /predict/housing and /predict/iris and records, per thread,
-- which model version answered and when: a run of equal versions is one segment
-- {model, version, first_ms, last_ms, count}. done() writes the segments with wrk's own counts
-- (requests, non-2xx, socket errors, latency percentiles) as JSON to $LOAD_REPORT.
--
-- Environment: LOAD_HOUSING_BODY, LOAD_IRIS_BODY (JSON request bodies), LOAD_REPORT (path),
-- LOAD_PAUSE_MS (optional: each connection waits this long after an answer before its next
-- request; 0 or unset = back to back).

local ffi = require("ffi")
ffi.cdef([[
struct load_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct load_timespec *tp);
]])
local CLOCK_REALTIME = 0 -- wall clock, so the test can compare with its own time.time()
local MAX_SEGMENTS = 100000 -- bounds memory if versions flap for minutes; overflow is counted
local MAX_SAMPLES = 5 -- bodies of unexpected answers kept for the failure message

local timespec = ffi.new("struct load_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_REALTIME, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local pause_ms = tonumber(os.getenv("LOAD_PAUSE_MS") or "0")
if pause_ms > 0 then
  -- Defined only when wanted: wrk then schedules every request through a timer.
  function delay()
    return pause_ms
  end
end

-- main state: one entry per thread, filled by setup() and read back in done()
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

-- thread state (each wrk thread runs its own copy of this script)
local requests_made = 0
local paths = { "/predict/housing", "/predict/iris" }
local prepared = {}

-- Flat arrays of scalars: wrk copies thread values into the main state one table level deep.
seg_model, seg_version, seg_first, seg_last, seg_count = {}, {}, {}, {}, {}
segments_dropped = 0
bad_status, unparsed = 0, 0
samples = {}
local current = {} -- model -> index of its open segment

function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  prepared[1] = wrk.format("POST", paths[1], headers, assert(os.getenv("LOAD_HOUSING_BODY")))
  prepared[2] = wrk.format("POST", paths[2], headers, assert(os.getenv("LOAD_IRIS_BODY")))
end

function request()
  requests_made = requests_made + 1
  return prepared[(requests_made % 2) + 1]
end

local function sample(status, body)
  if #samples < MAX_SAMPLES then
    table.insert(samples, status .. " " .. string.sub(body or "", 1, 300))
  end
end

local function observe(model, version, t)
  local i = current[model]
  if i ~= nil and seg_version[i] == version then
    seg_last[i] = t
    seg_count[i] = seg_count[i] + 1
    return
  end
  if #seg_model >= MAX_SEGMENTS then
    segments_dropped = segments_dropped + 1
    return
  end
  i = #seg_model + 1
  seg_model[i], seg_version[i], seg_first[i], seg_last[i], seg_count[i] = model, version, t, t, 1
  current[model] = i
end

function response(status, headers, body)
  local t = now_ms()
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
    sample(status, body)
    return
  end
  -- orjson writes {"model":{"name":"housing",...,"version":"3",...}}: no nested braces inside
  local ref = string.match(body, '"model"%s*:%s*(%b{})')
  local model = ref and string.match(ref, '"name"%s*:%s*"([^"]*)"')
  local version = ref and string.match(ref, '"version"%s*:%s*"([^"]*)"')
  if model == nil or version == nil then
    unparsed = unparsed + 1
    sample(status, body)
    return
  end
  observe(model, version, t)
end

local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local out = {}
  local function add(s)
    table.insert(out, s)
  end
  local errors = summary.errors
  add(string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ',
    summary.duration, summary.requests, summary.bytes,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status
  ))
  add(string.format(
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, '
      .. '"p999": %d}, "threads": [',
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)
  ))
  for n, thread in ipairs(threads) do
    local models, versions = thread:get("seg_model"), thread:get("seg_version")
    local first, last, count = thread:get("seg_first"), thread:get("seg_last"), thread:get("seg_count")
    local segs = {}
    for i = 1, #models do
      table.insert(segs, string.format(
        '{"model": %s, "version": %s, "first_ms": %.3f, "last_ms": %.3f, "count": %d}',
        json_string(models[i]), json_string(versions[i]), first[i], last[i], count[i]
      ))
    end
    local kept = {}
    for _, s in ipairs(thread:get("samples")) do
      table.insert(kept, json_string(s))
    end
    add(string.format(
      '%s{"id": %d, "bad_status": %d, "unparsed": %d, "segments_dropped": %d, '
        .. '"samples": [%s], "segments": [%s]}',
      n > 1 and ", " or "", thread:get("id"), thread:get("bad_status"), thread:get("unparsed"),
      thread:get("segments_dropped"), table.concat(kept, ", "), table.concat(segs, ", ")
    ))
  end
  add("]}\n")
  local f = assert(io.open(assert(os.getenv("LOAD_REPORT")), "w"))
  f:write(table.concat(out))
  f:close()
end
