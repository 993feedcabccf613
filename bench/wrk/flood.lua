-- wrk script for bench/flood.py: sends the credentials of a file (one per line) in turn, pacing
-- every connection with a fixed delay so the stream runs at a chosen rate.
--   wrk ... -s flood.lua <url> -- <path> <creds_file> <delay_ms> [<header> [<addresses> [<per_address>]]]
-- header: "authorization" (default; each line is a token, sent as "Bearer <line>") or another
--   header name, e.g. "x-api-key" (each line sent as it is).
-- addresses: "-" (default: no x-forwarded-for, the TCP peer), one address (every request carries
--   "x-forwarded-for: <address>"), or "many:<prefix>": request n carries the address
--   <prefix><n / per_address in hex>, e.g. many:2001:db8:7:: gives 2001:db8:7::0, ::1, ...; each
--   address sends per_address (default 1) requests in a row, then the next one takes over.
-- done() prints "BENCH_RESULT {json}" with wrk's counts and the responses by status class.
local creds, path, pause, header = {}, "/", 0, "authorization"
local fixed, prefix, per_address = nil, nil, 1
local i, n = 0, 0
local threads = {}
s2xx, s401, s429, s503, sother, addresses = 0, 0, 0, 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path, pause = args[1], tonumber(args[3])
  header = args[4] or "authorization"
  local where = args[5] or "-"
  per_address = tonumber(args[6] or "1")
  if where:sub(1, 5) == "many:" then
    prefix = where:sub(6)
  elseif where ~= "-" then
    fixed = where
  end
  for line in io.lines(args[2]) do
    if #line > 0 then table.insert(creds, line) end
  end
  -- Threads start at different offsets so they do not send the same credentials.
  i = math.random(#creds) - 1
end

function delay()
  return pause
end

local function address()
  if prefix then
    local index = math.floor(n / per_address)
    addresses = index + 1
    n = n + 1
    -- Two hextets, so a run can use more than 65536 addresses.
    if index >= 65536 then
      return string.format("%s%x:%x", prefix, math.floor(index / 65536), index % 65536)
    end
    return string.format("%s%x", prefix, index)
  end
  return fixed
end

function request()
  i = i % #creds + 1
  local headers = {}
  if header == "authorization" then
    headers["authorization"] = "Bearer " .. creds[i]
  else
    headers[header] = creds[i]
  end
  local xff = address()
  if xff then headers["x-forwarded-for"] = xff end
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 401 then s401 = s401 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else sother = sother + 1 end
end

function done(summary, latency, requests)
  local c = { s2xx = 0, s401 = 0, s429 = 0, s503 = 0, sother = 0, addresses = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(c) do c[k] = c[k] + (t:get(k) or 0) end
  end
  io.write(string.format(
    'BENCH_RESULT {"duration_us":%d,"requests":%d,"errors":{"status":%d,"connect":%d,"read":%d,"timeout":%d},' ..
    '"statuses":{"2xx":%d,"401":%d,"429":%d,"503":%d,"other":%d},"addresses":%d}\n',
    summary.duration, summary.requests, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.timeout, c.s2xx, c.s401, c.s429, c.s503, c.sother, c.addresses))
end
