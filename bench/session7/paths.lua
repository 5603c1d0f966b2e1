-- wrk: GET a mix of listing pages (with cursors and filters) and thumbnails over a store of N generations.
local n = tonumber(os.getenv("GENERATIONS") or "1000")
local counter = 0
request = function()
  counter = counter + 1
  local id = math.random(1, n)
  local path
  local r = counter % 4
  if r == 0 then path = "/api/generations?limit=50"
  elseif r == 1 then path = "/api/generations?limit=50&cursor=" .. id
  elseif r == 2 then path = "/api/generations/" .. id .. "/thumbnail?size=16"
  else path = "/api/generations/" .. id .. "/thumbnail" end
  return wrk.format("GET", path)
end
done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors connect %d read %d write %d status %d timeout %d\n", summary.requests,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g %.2f ms\n", p, latency:percentile(p) / 1000))
  end
  io.write(string.format("max %.2f ms, mean %.2f ms\n", latency.max / 1000, latency.mean / 1000))
end
