-- wrk script: every request is GET $WRK_PATH carrying the cookie of a logged-in user picked at
-- random, so that the load spreads over many sessions as real traffic does. $COOKIE_FILE holds
-- one Cookie header value per line.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local path = os.getenv("WRK_PATH") or "/"
local cookies = {}

function init(args)
  for line in io.lines(os.getenv("COOKIE_FILE")) do
    if #line > 0 then cookies[#cookies + 1] = line end
  end
  if #cookies == 0 then error("no cookies in " .. tostring(os.getenv("COOKIE_FILE"))) end
  -- a different sequence per thread: threads started in the same second would repeat each other
  math.randomseed(os.time() + 7919 * (id or 0))
end

function request()
  return wrk.format("GET", path, { ["Cookie"] = cookies[math.random(#cookies)] })
end
