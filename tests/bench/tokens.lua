-- wrk script: one Authorization header per request, round-robin over the tokens in the file
-- named by $TOKENS_FILE (one token per line).
local tokens = {}
for line in io.lines(os.getenv("TOKENS_FILE")) do
  if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
assert(#tokens > 0, "no tokens in " .. tostring(os.getenv("TOKENS_FILE")))
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = tokens[i] })
end
