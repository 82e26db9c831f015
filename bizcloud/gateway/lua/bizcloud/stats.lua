-- Per service, environment and group: requests by status class, a latency histogram, upstream
-- errors and group fallbacks, in a shared dict; `/metrics` on the admin port renders them in
-- Prometheus' text format (the gray-release analysis compares the groups with them).
local ngx = ngx
local dict = ngx.shared.bizcloud_stats

local _M = {}

local BOUNDS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local SEP = "\1"

local function incr(key, value)
    local ok, err = dict:incr(key, value or 1, 0)
    if not ok then ngx.log(ngx.WARN, "bizcloud_stats: ", err) end
end

local function labels(service, env, group)
    return service .. SEP .. env .. SEP .. group
end

function _M.no_route()
    incr("noroute")
end

function _M.fallback(service, env, from, to)
    incr("fallback" .. SEP .. service .. SEP .. env .. SEP .. from .. SEP .. to)
end

function _M.upstream_error(service, env, group)
    incr("uperr" .. SEP .. labels(service, env, group))
end

-- log_by_lua: one routed request.
function _M.log()
    local ctx = ngx.ctx
    if ctx.service == nil then return end
    local l = labels(ctx.service, ctx.env, ctx.group)
    local status = ngx.status
    incr("req" .. SEP .. l .. SEP .. math.floor(status / 100) .. "xx")
    local elapsed = tonumber(ngx.var.request_time) or 0
    local slot = #BOUNDS + 1
    for i = 1, #BOUNDS do
        if elapsed <= BOUNDS[i] then slot = i; break end
    end
    incr("lat" .. SEP .. l .. SEP .. slot)
    incr("latsum" .. SEP .. l, elapsed)
end

local function split(key)
    local parts = {}
    for part in (key .. SEP):gmatch("(.-)" .. SEP) do parts[#parts + 1] = part end
    return parts
end

local function esc(value)
    return (value:gsub("\\", "\\\\"):gsub("\"", "\\\""):gsub("\n", "\\n"))
end

local function lbl(service, env, group)
    return 'service="' .. esc(service) .. '",env="' .. esc(env) .. '",group="' .. esc(group) .. '"'
end

-- GET /metrics on the admin port.
function _M.serve_metrics()
    local out = {}
    local function line(s) out[#out + 1] = s end
    local hist = {}   -- labels -> {counts per slot, sum}
    local requests, errors, fallbacks = {}, {}, {}
    for _, key in ipairs(dict:get_keys(0)) do
        local value = dict:get(key) or 0
        local p = split(key)
        if p[1] == "req" then
            requests[#requests + 1] = lbl(p[2], p[3], p[4]) .. ',code="' .. p[5] .. '"} ' .. value
        elseif p[1] == "uperr" then
            errors[#errors + 1] = lbl(p[2], p[3], p[4]) .. "} " .. value
        elseif p[1] == "fallback" then
            fallbacks[#fallbacks + 1] = 'service="' .. esc(p[2]) .. '",env="' .. esc(p[3]) .. '",from="'
                .. p[4] .. '",to="' .. p[5] .. '"} ' .. value
        elseif p[1] == "lat" or p[1] == "latsum" then
            local l = lbl(p[2], p[3], p[4])
            hist[l] = hist[l] or { counts = {}, sum = 0 }
            if p[1] == "lat" then hist[l].counts[tonumber(p[5])] = value else hist[l].sum = value end
        end
    end
    line("# HELP bizcloud_gateway_requests_total Requests routed to a service, by group and status class.")
    line("# TYPE bizcloud_gateway_requests_total counter")
    for _, s in ipairs(requests) do line("bizcloud_gateway_requests_total{" .. s) end
    line("# HELP bizcloud_gateway_upstream_errors_total Connections to a peer that failed (then retried).")
    line("# TYPE bizcloud_gateway_upstream_errors_total counter")
    for _, s in ipairs(errors) do line("bizcloud_gateway_upstream_errors_total{" .. s) end
    line("# HELP bizcloud_gateway_fallbacks_total Requests served by the other group: theirs had no instance.")
    line("# TYPE bizcloud_gateway_fallbacks_total counter")
    for _, s in ipairs(fallbacks) do line("bizcloud_gateway_fallbacks_total{" .. s) end
    line("# HELP bizcloud_gateway_no_route_total Requests for a host and path no route matched.")
    line("# TYPE bizcloud_gateway_no_route_total counter")
    line("bizcloud_gateway_no_route_total " .. (dict:get("noroute") or 0))
    line("# HELP bizcloud_gateway_request_duration_seconds Time to answer a routed request.")
    line("# TYPE bizcloud_gateway_request_duration_seconds histogram")
    for l, h in pairs(hist) do
        local total = 0
        for i = 1, #BOUNDS do
            total = total + (h.counts[i] or 0)
            line("bizcloud_gateway_request_duration_seconds_bucket{" .. l .. ',le="' .. BOUNDS[i] .. '"} ' .. total)
        end
        total = total + (h.counts[#BOUNDS + 1] or 0)
        line("bizcloud_gateway_request_duration_seconds_bucket{" .. l .. ',le="+Inf"} ' .. total)
        line("bizcloud_gateway_request_duration_seconds_sum{" .. l .. "} " .. h.sum)
        line("bizcloud_gateway_request_duration_seconds_count{" .. l .. "} " .. total)
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.print(table.concat(out, "\n"), "\n")
end

return _M
