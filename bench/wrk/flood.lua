-- wrk script for bench/flood.py: sends the tokens of a file (one per line), each once, pacing
-- every connection with a fixed delay so the flood runs at a chosen rate.
--   wrk ... -s flood.lua <url> -- <path> <tokens_file> <delay_ms>
local tokens, path, pause = {}, "/", 0
local i = 0

function init(args)
  path, pause = args[1], tonumber(args[3])
  for line in io.lines(args[2]) do table.insert(tokens, line) end
  -- Threads start at different offsets so they do not send the same tokens.
  i = math.random(#tokens)
end

function delay()
  return pause
end

function request()
  i = i % #tokens + 1
  return wrk.format("GET", path, { ["authorization"] = "Bearer " .. tokens[i] })
end

function done(summary, latency, requests)
  io.write(string.format('BENCH_RESULT {"duration_us":%d,"requests":%d,"errors":{"status":%d}}\n',
    summary.duration, summary.requests, summary.errors.status))
end
