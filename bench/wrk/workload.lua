-- wrk script for the finguard benchmark (bench/run.py writes the arguments).
--   wrk ... -s workload.lua <url> -- <method> <path> <body_file|-> <tokens_file|-> <first> <count>
-- tokens_file holds one token per line. count == 1: every request carries the same token (static
-- request, built once). count > 1: request i carries token first+i; when the slice is used up the
-- thread stops (the harness then reports the run as "exhausted" rather than reusing a token).
-- done() prints one line "BENCH_RESULT {json}" with exact figures from wrk's own statistics.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local requests = nil
local next_index = 1
exhausted = false
issued = 0

function init(args)
  local method, path, body_file, tokens_file = args[1], args[2], args[3], args[4]
  local first, count = tonumber(args[5]), tonumber(args[6])
  local body = nil
  local headers = {}
  if body_file ~= "-" then
    body = read_file(body_file)
    headers["content-type"] = "application/json"
  end
  local tokens = {}
  if tokens_file ~= "-" then
    local i = 0
    for line in io.lines(tokens_file) do
      i = i + 1
      if i >= first + count then break end
      if i >= first and #line > 0 then table.insert(tokens, line) end
    end
    assert(#tokens == count, "token file has too few tokens")
  end
  wrk.method = method
  wrk.path = path
  wrk.body = body
  for k, v in pairs(headers) do wrk.headers[k] = v end
  if #tokens <= 1 then
    if #tokens == 1 then wrk.headers["authorization"] = "Bearer " .. tokens[1] end
    request = nil   -- static: wrk formats the request once
  else
    requests = {}
    for i, token in ipairs(tokens) do
      local h = {}
      for k, v in pairs(wrk.headers) do h[k] = v end
      h["authorization"] = "Bearer " .. token
      requests[i] = wrk.format(method, path, h, body)
    end
    request = function()
      local r = requests[next_index]
      issued = next_index
      if next_index < #requests then
        next_index = next_index + 1
      elseif not exhausted then
        exhausted = true
        wrk.thread:stop()
      end
      return r
    end
  end
end

function done(summary, latency, requests_stats)
  local any_exhausted = false
  local issued_total = 0
  for _, t in ipairs(threads) do
    if t:get("exhausted") then any_exhausted = true end
    issued_total = issued_total + (t:get("issued") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"exhausted":%s,"dynamic_tokens_issued":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    tostring(any_exhausted), issued_total))
end
