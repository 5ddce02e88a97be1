local words = {"shoes", "tent", "refund", "boots", "jacket", "shipping", "headphones", "lamp", "desk", "bike"}
local i = 0
request = function()
  i = i + 1
  local q = words[(i % 10) + 1] .. " " .. words[(math.floor(i / 10) % 10) + 1]
  return wrk.format("POST", "/v1/search", {["content-type"] = "application/json"}, '{"query":"' .. q .. '","k":10}')
end
