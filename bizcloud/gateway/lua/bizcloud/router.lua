-- The request path before the balancer: host + path -> route -> service's gray policy -> group.
--
-- Runs in the access phase on the worker's synced copy (state.lua); it never decodes JSON and
-- never throws. An unknown host or path answers 404 with a short body; a service with no instance
-- in either group answers 503. The group is chosen by user ID exactly as `bizcloud.usersplit`
-- does in Python: whitelisted, or bucket(uid) < ratio x 100, with bucket the first 32 bits of the
-- MD5 of the uid, mod 10000. When the chosen group is empty and the policy allows it, the other
-- group serves the request and the fallback is counted.
local state = require("bizcloud.state")
local stats = require("bizcloud.stats")
local balancer = require("bizcloud.balancer")

local ngx = ngx
local cache = state.cache
local md5_bin = ngx.md5_bin
local byte = string.byte

local _M = {}

local BUCKETS = 10000
local DEFAULT_POLICY = { threshold = 0, whitelist = {}, fallback = true, var = "http_x_user_id" }

-- The first 32 bits of the MD5, big-endian (= int(md5(uid).hexdigest()[:8], 16)), mod 10000;
-- read from the binary digest, so no hex string is built per request.
function _M.bucket(uid)
    local a, b, c, d = byte(md5_bin(uid), 1, 4)
    return (((a * 256 + b) * 256 + c) * 256 + d) % BUCKETS
end

local function prefix_matches(prefix, uri)
    if prefix == "/" then return true end
    if uri:sub(1, #prefix) ~= prefix then return false end
    -- "/shop" matches "/shop" and "/shop/..." but not "/shopping"
    return #uri == #prefix or prefix:sub(-1) == "/" or uri:sub(#prefix + 1, #prefix + 1) == "/"
end

local function find(list, uri)
    if not list then return nil end
    for i = 1, #list do
        local route = list[i]
        if prefix_matches(route.prefix, uri) then return route end
    end
    return nil
end

function _M.match(host, uri)
    return find(cache.by_host[host], uri) or find(cache.any_host, uri)
end

-- The route for this request. With one catch-all route and no other (what `make up` routes),
-- neither the host nor the path needs reading.
local function lookup()
    local route = cache.catch_all
    if route then return route end
    return _M.match(ngx.var.host, ngx.var.uri)
end

function _M.group_for(policy, uid)
    if uid == nil or uid == "" then return "normal" end
    if policy.whitelist[uid] then return "gray" end
    if policy.threshold > 0 and _M.bucket(uid) < policy.threshold then return "gray" end
    return "normal"
end

local function answer(status, message)
    ngx.status = status
    ngx.header["Content-Type"] = "text/plain"
    ngx.say(message)
    return ngx.exit(status)
end

-- access_by_lua: pick the route and the group; leave the peers and the group's stats record
-- (which names service, env and group) for the balancer and the log phase in ngx.ctx, and the
-- group in $bizcloud_group (the X-BizCloud-Group header to the peer and to the client).
function _M.route()
    state.sync()
    local route = lookup()
    if route == nil then
        stats.no_route()
        return answer(404, "bizcloud gateway: no route for host " .. ngx.var.host .. " path " .. ngx.var.uri)
    end
    local policy = cache.policies[route.service] or DEFAULT_POLICY
    local uid = ngx.var[policy.var]
    local group = _M.group_for(policy, uid)
    local upstream = cache.upstreams[route.key]
    local peers = upstream and upstream[group]
    if (peers == nil or #peers == 0) and policy.fallback then
        local other = group == "gray" and "normal" or "gray"
        local others = upstream and upstream[other]
        if others and #others > 0 then
            stats.fallback(route.service, route.env, group, other)
            group, peers = other, others
        end
    end
    local records = route.stats
    local rec = records[group]
    if rec == nil then
        rec = stats.record(route.service, route.env, group)
        records[group] = rec
    end
    local ctx = ngx.ctx
    ctx.stats = rec
    if peers == nil or #peers == 0 then
        return answer(503, "bizcloud gateway: no instance of " .. route.service .. " in " .. route.env
            .. " (" .. group .. ")")
    end
    ctx.peers = peers
    ngx.var.bizcloud_group = group
end

-- log_by_lua: release the balancer's hold on the peer, count the request.
function _M.log()
    local ctx = ngx.ctx
    local rec = ctx.stats
    if rec == nil then return end
    balancer.finish(ctx)
    stats.log(rec, ngx.status)
end

return _M
