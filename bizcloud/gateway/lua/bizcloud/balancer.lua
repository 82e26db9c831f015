-- balancer_by_lua: pick a peer of the group the router chose; retry a failed connection on
-- another peer of the same group and mark the failed one down for a short cool-off.
--
-- Policies live in a table, each with `pick(ctx, peers, usable)`: round_robin (a per-worker
-- counter per upstream and group) and least_conn (fewest requests in flight from this worker,
-- ties broken round-robin). Down marks are shared by all workers (a shared dict with a TTL), so
-- a peer that refused one connection is skipped everywhere until the cool-off ends or the
-- catalog removes it. Nothing here throws: failures log and fall back to any peer.
local ngx_balancer = require("ngx.balancer")
local stats = require("bizcloud.stats")

local ngx = ngx
local down = ngx.shared.bizcloud_down

local _M = { policy = "round_robin", cooloff = 3, max_tries = 3 }

local counters = {}   -- key|group -> next index (round robin)
local inflight = {}   -- addr -> requests this worker has in flight (least_conn)

local function next_index(ctx, n)
    local name = ctx.key .. "|" .. ctx.group
    local i = (counters[name] or 0) % n + 1
    counters[name] = i
    return i
end

local policies = {}

function policies.round_robin(ctx, peers, usable)
    local n = #peers
    local start = next_index(ctx, n)
    for k = 0, n - 1 do
        local peer = peers[(start + k - 1) % n + 1]
        if usable(peer) then return peer end
    end
    return nil
end

function policies.least_conn(ctx, peers, usable)
    local n = #peers
    local start = next_index(ctx, n)
    local best, best_load
    for k = 0, n - 1 do
        local peer = peers[(start + k - 1) % n + 1]
        if usable(peer) then
            local load = inflight[peer.addr] or 0
            if best == nil or load < best_load then best, best_load = peer, load end
        end
    end
    return best
end

function _M.configure(options)
    if options.policy and policies[options.policy] then _M.policy = options.policy end
    _M.cooloff = options.cooloff or _M.cooloff
    _M.max_tries = options.max_tries or _M.max_tries
end

local function release(ctx)
    local addr = ctx.inflight_addr
    if addr then
        inflight[addr] = (inflight[addr] or 1) - 1
        ctx.inflight_addr = nil
    end
end

function _M.balance()
    local ctx = ngx.ctx
    local peers = ctx.peers
    if peers == nil then
        ngx.log(ngx.ERR, "balancer called without a routed request")
        return ngx.exit(502)
    end
    local tried = ctx.tried
    if tried == nil then
        tried = {}
        ctx.tried = tried
        local tries = math.min(#peers, _M.max_tries)
        if tries > 1 then
            local ok, err = ngx_balancer.set_more_tries(tries - 1)
            if not ok then ngx.log(ngx.WARN, "set_more_tries: ", err) end
        end
    else
        local failure = ngx_balancer.get_last_failure()
        local last = ctx.last_addr
        if last then
            stats.upstream_error(ctx.service, ctx.env, ctx.group)
            if failure == "failed" then down:set(last, true, _M.cooloff) end
        end
        release(ctx)
    end
    local usable = function(peer) return not tried[peer.addr] and not down:get(peer.addr) end
    local pick = policies[_M.policy]
    local peer = pick(ctx, peers, usable)
    if peer == nil then  -- every peer tried or marked down: any untried one, down or not
        peer = pick(ctx, peers, function(p) return not tried[p.addr] end) or peers[1]
    end
    tried[peer.addr] = true
    ctx.last_addr = peer.addr
    ctx.inflight_addr = peer.addr
    inflight[peer.addr] = (inflight[peer.addr] or 0) + 1
    local ok, err = ngx_balancer.set_current_peer(peer.ip, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "set_current_peer ", peer.addr, ": ", err)
        return ngx.exit(502)
    end
end

-- log phase
function _M.finish()
    release(ngx.ctx)
end

return _M
