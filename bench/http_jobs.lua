-- wrk script for bench/http.py: each connection submits a job (POST /jobs), then polls
-- GET /jobs/<id> every BENCH_POLL_MS until its status is no longer "pending", then submits the next.
-- Run with as many threads as connections, so that each thread's state is one connection's job.
-- done() prints one line "BENCH_JSON {...}" with the counts and the end-to-end latencies
-- (POST sent -> the GET that saw the job finished) of every thread.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

local poll_ms = tonumber(os.getenv("BENCH_POLL_MS") or "5")
local job_body = '{"type": "integer", "value": 0}'
local job_path = nil -- the job this connection polls; nil: submit a new one
local started_us = 0

-- Globals, so that done() can collect them from every thread with thread:get().
latencies_us = {}
submitted, finished, rejected, errors, polls = 0, 0, 0, 0, 0
statuses = {}

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function request()
  if job_path then
    polls = polls + 1
    return wrk.format("GET", job_path)
  end
  started_us = now_us()
  return wrk.format("POST", "/jobs", { ["Content-Type"] = "application/json" }, job_body)
end

function response(status, headers, body)
  if job_path == nil then
    if status == 202 then
      submitted = submitted + 1
      job_path = headers["Location"] or headers["location"]
      if job_path == nil then
        errors = errors + 1
      end
    elseif status == 429 then
      rejected = rejected + 1 -- back-pressure: counted apart, never as a success
    else
      errors = errors + 1
    end
    return
  end
  if status ~= 200 then
    errors = errors + 1
    job_path = nil
    return
  end
  local state = body:match('"status"%s*:%s*"([^"]*)"')
  if state ~= "pending" then
    finished = finished + 1
    statuses[state or "unreadable"] = (statuses[state or "unreadable"] or 0) + 1
    latencies_us[#latencies_us + 1] = now_us() - started_us
    job_path = nil
  end
end

function delay()
  if job_path then
    return poll_ms
  end
  return 0
end

local function percentile_ms(sorted, fraction)
  if #sorted == 0 then
    return "null"
  end
  local index = math.min(#sorted, math.floor(fraction * #sorted) + 1)
  return string.format("%.2f", sorted[index] / 1000)
end

function done(summary, latency, requests)
  local all = {}
  local totals = { submitted = 0, finished = 0, rejected = 0, errors = 0, polls = 0 }
  local by_status = {}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
    for _, value in ipairs(thread:get("latencies_us")) do
      all[#all + 1] = value
    end
    for state, count in pairs(thread:get("statuses")) do
      by_status[state] = (by_status[state] or 0) + count
    end
  end
  table.sort(all)
  local states = {}
  for state, count in pairs(by_status) do
    states[#states + 1] = string.format('"%s": %d', state, count)
  end
  local errors = summary.errors
  io.write(
    string.format(
      "BENCH_JSON {"
        .. '"requests": %d, "duration_s": %.3f, "submitted": %d, "finished": %d, "rejected_429": %d, '
        .. '"errors": %d, "polls": %d, "finished_by_status": {%s}, '
        .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
        .. '"request_p50_ms": %.2f, "request_p99_ms": %.2f, '
        .. '"p50_ms": %s, "p90_ms": %s, "p99_ms": %s, "max_ms": %s}\n',
      summary.requests,
      summary.duration / 1000000,
      totals.submitted,
      totals.finished,
      totals.rejected,
      totals.errors,
      totals.polls,
      table.concat(states, ", "),
      errors.connect,
      errors.read,
      errors.write,
      errors.timeout,
      latency:percentile(50) / 1000,
      latency:percentile(99) / 1000,
      percentile_ms(all, 0.50),
      percentile_ms(all, 0.90),
      percentile_ms(all, 0.99),
      percentile_ms(all, 1.0)
    )
  )
end
