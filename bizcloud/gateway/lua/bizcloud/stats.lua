-- Per service, environment and group: requests by status class, a latency histogram, upstream
-- errors and group fallbacks, in a shared dict; `/metrics` on the admin port renders them in
-- Prometheus' text format (the gray-release analysis compares the groups with them).
--
-- The request path never touches the shared dict for the per-request counts: `log` adds to this
-- worker's own Lua table (one record per service/env/group, reached from the request's pick
-- without building a key), and a per-worker timer adds what accumulated to the shared dict every FLUSH_S. A scrape
-- flushes its own worker and waits one flush period for the others, so what it reports includes
-- every request answered before it began. Rare events (upstream errors, fallbacks, no route) go
-- to the shared dict at once.
local ngx = ngx
local dict = ngx.shared.bizcloud_stats
local floor = math.floor
local now = ngx.now
local start_time = ngx.req.start_time

local _M = {}

local BOUNDS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local NBOUNDS = #BOUNDS
local SEP = "\1"
local FLUSH_S = 0.1

local records = {}   -- labels -> this worker's pending counts for one service/env/group

local function incr(key, value)
    local ok, err = dict:incr(key, value or 1, 0)
    if not ok then ngx.log(ngx.WARN, "bizcloud_stats: ", err) end
end

local function labels(service, env, group)
    return service .. SEP .. env .. SEP .. group
end

-- The pending counts of one service/env/group in this worker (made on first use, then reused:
-- the router keeps the record on its compiled route, so the request path builds no string).
function _M.record(service, env, group)
    local l = labels(service, env, group)
    local rec = records[l]
    if rec == nil then
        rec = { service = service, env = env, group = group, labels = l, dirty = false, classes = {},
                slots = {}, sum = 0 }
        for i = 1, NBOUNDS + 1 do rec.slots[i] = 0 end
        records[l] = rec
    end
    return rec
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

-- log_by_lua: one routed request, counted in this worker's record.
function _M.log(rec, status)
    local elapsed = now() - start_time()
    if elapsed < 0 then elapsed = 0 end
    local class = floor(status / 100)
    local classes = rec.classes
    classes[class] = (classes[class] or 0) + 1
    local slot = NBOUNDS + 1
    for i = 1, NBOUNDS do
        if elapsed <= BOUNDS[i] then slot = i; break end
    end
    local slots = rec.slots
    slots[slot] = slots[slot] + 1
    rec.sum = rec.sum + elapsed
    rec.dirty = true
end

-- Add this worker's pending counts to the shared dict (the keys `serve_metrics` reads).
function _M.flush()
    for l, rec in pairs(records) do
        if rec.dirty then
            rec.dirty = false
            for class, n in pairs(rec.classes) do
                if n > 0 then
                    incr("req" .. SEP .. l .. SEP .. class .. "xx", n)
                    rec.classes[class] = 0
                end
            end
            local slots = rec.slots
            for i = 1, NBOUNDS + 1 do
                if slots[i] > 0 then
                    incr("lat" .. SEP .. l .. SEP .. i, slots[i])
                    slots[i] = 0
                end
            end
            incr("latsum" .. SEP .. l, rec.sum)
            rec.sum = 0
        end
    end
end

-- init_worker: flush every FLUSH_S (and once more when the worker exits).
function _M.start_flushing()
    local ok, err = ngx.timer.every(FLUSH_S, _M.flush)
    if not ok then ngx.log(ngx.ERR, "bizcloud_stats: cannot start the flush timer: ", err) end
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
    _M.flush()
    ngx.sleep(FLUSH_S * 1.5)   -- the other workers' timers flush what they counted before now
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
