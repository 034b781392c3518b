-- wrk script: POST /workflows/execute (async), the seed's refund with a new payment id each time.
-- Each wrk thread gets a number in setup(), so payment ids never repeat across threads.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local sent = 0
local headers = { ["Content-Type"] = "application/json" }
local token = os.getenv("TEAMFLOW_BENCH_TOKEN")  -- access control on: every request carries it
if token ~= nil and token ~= "" then
  headers["Authorization"] = "Bearer " .. token
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"namespace": "payments", "name": "process_refund", "version": "2.1.0", '
      .. '"context": {"payment_id": "pay_wrk%d_%d"}}',
    thread_number, sent
  )
  return wrk.format("POST", "/workflows/execute", headers, body)
end
