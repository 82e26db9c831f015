-- balancer_by_lua: pick a peer of the group the router chose; retry a failed connection on
-- another peer of the same group and mark the failed one down for a short cool-off.
--
-- The router's pick and the peer chosen for a request are in `requests` (keyed by the request,
-- not in ngx.ctx); a first attempt is told from a retry by `get_last_failure`, and the set of
-- failed peers is made on the first retry only, so most requests allocate nothing here.
--
-- Policies live in a table, each with `pick(peers, ok, tried, slot)`: round_robin (a per-worker
-- counter per upstream and group) and least_conn (fewest requests in flight from this worker,
-- ties broken round-robin). Down marks are shared by all workers (a shared dict with a TTL), so
-- a peer that refused one connection is skipped everywhere until the cool-off ends or the
-- catalog removes it. Nothing here throws: failures log and fall back to any peer.
local ngx_balancer = require("ngx.balancer")
local stats = require("bizcloud.stats")
local requests = require("bizcloud.requests")

local ngx = ngx
local down = ngx.shared.bizcloud_down
local set_current_peer = ngx_balancer.set_current_peer
local set_more_tries = ngx_balancer.set_more_tries
local get_last_failure = ngx_balancer.get_last_failure
local current = requests.current
local now, next = ngx.now, next
local picks, chosen, failed = requests.pick, requests.peer, requests.tried

local _M = { policy = "round_robin", cooloff = 3, max_tries = 3 }

-- Round-robin position per upstream and group (the pick's `slot`, a string the router makes once
-- per peer list, so none is built per request). It carries on when the catalog replaces the list:
-- restarting from the first peer on every change sent the list's head an extra request each time
-- (under churn, many) and a peer just added, which goes last, its first request only after all
-- the others.
local counters = {}
local inflight = {}   -- addr -> requests this worker has in flight (least_conn)
local track = false   -- only least_conn needs the in-flight counts

local function next_index(slot, n)
    local i = (counters[slot] or 0) % n + 1
    counters[slot] = i
    return i
end

-- Whether any peer is marked down, looked up once per tick of nginx's cached clock (ms) rather
-- than reading the shared dict (a lock both workers contend for) for every request's peer: a
-- mark this worker makes counts at once, another worker's from its next tick.
local any_down, down_checked_at = false, -1

local function some_down()
    local t = now()
    if t ~= down_checked_at then
        down_checked_at = t
        any_down = next(down:get_keys(1)) ~= nil
    end
    return any_down
end

-- Filters the policies take (plain functions: no closure is made per request).
local function usable(peer, tried)
    return (tried == nil or not tried[peer.addr]) and not (some_down() and down:get(peer.addr))
end

local function untried(peer, tried)
    return tried == nil or not tried[peer.addr]
end

local policies = {}

function policies.round_robin(peers, ok, tried, slot)
    local n = #peers
    local start = next_index(slot, n)
    for k = 0, n - 1 do
        local peer = peers[(start + k - 1) % n + 1]
        if ok(peer, tried) then return peer end
    end
    return nil
end

function policies.least_conn(peers, ok, tried, slot)
    local n = #peers
    local start = next_index(slot, n)
    local best, best_load
    for k = 0, n - 1 do
        local peer = peers[(start + k - 1) % n + 1]
        if ok(peer, tried) then
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
    track = _M.policy == "least_conn"
end

local function release(r)
    local addr = chosen[r]
    if addr then inflight[addr] = (inflight[addr] or 1) - 1 end
end

function _M.balance()
    local r = current()
    local pick = picks[r]
    local peers = pick and pick.peers
    if peers == nil then
        ngx.log(ngx.ERR, "balancer called without a routed request")
        return ngx.exit(502)
    end
    local tried
    local failure = get_last_failure()
    if failure == nil then   -- the first attempt
        local tries = #peers < _M.max_tries and #peers or _M.max_tries
        if tries > 1 then
            local ok, err = set_more_tries(tries - 1)
            if not ok then ngx.log(ngx.WARN, "set_more_tries: ", err) end
        end
    else
        local last = chosen[r]
        tried = failed[r]
        if tried == nil then
            tried = {}
            failed[r] = tried
        end
        tried[last] = true
        local rec = pick.stats
        stats.upstream_error(rec.service, rec.env, rec.group)
        if failure == "failed" then
            down:set(last, true, _M.cooloff)
            any_down = true
        end
        if track then release(r) end
    end
    local pick_peer = policies[_M.policy]
    local peer = pick_peer(peers, usable, tried, pick.slot)
    if peer == nil then  -- every peer tried or marked down: any untried one, down or not
        peer = pick_peer(peers, untried, tried, pick.slot) or peers[1]
    end
    local addr = peer.addr
    chosen[r] = addr
    if track then inflight[addr] = (inflight[addr] or 0) + 1 end
    local ok, err = set_current_peer(peer.ip, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "set_current_peer ", addr, ": ", err)
        return ngx.exit(502)
    end
end

-- log phase (the router's `log`): release the peer, forget the request.
function _M.finish(r)
    if track then release(r) end
    chosen[r] = nil
    if failed[r] then failed[r] = nil end
end

return _M
