-- wrk script: POST /jobs with one compute job per request, each with its
-- own input (scripts/bench: wrk -s bench/post_job.lua).
wrk.method = "POST"
wrk.path = "/jobs"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = '{"type":"compute","payload":{"input":"wrk-' .. n .. '-' .. math.random(1e9) .. '"}}'
  return wrk.format(nil, nil, nil, body)
end
