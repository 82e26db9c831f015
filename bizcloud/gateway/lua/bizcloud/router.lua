-- The request path before the balancer: host + path -> route -> service's gray policy -> group.
--
-- `choose` runs in the rewrite phase (set_by_lua: no coroutine and no access-phase handler per
-- request) on the worker's synced copy (state.lua); it never decodes JSON and never throws. It
-- returns the group for $bizcloud_group and leaves the pick (the group's peers and its stats
-- record) in `requests.pick` for the balancer and the log phase. An unknown host or path, or a
-- service with no instance in either group, returns "" and `refuse` (the content handler nginx
-- runs then) answers 404 or 503 with a short body. The group is chosen by user ID exactly as
-- `bizcloud.usersplit` does in Python: whitelisted, or bucket(uid) < ratio x 100, with bucket the
-- first 32 bits of the MD5 of the uid, mod 10000. When the chosen group is empty and the policy
-- allows it, the other group serves the request and the fallback is counted.
local state = require("bizcloud.state")
local stats = require("bizcloud.stats")
local balancer = require("bizcloud.balancer")
local requests = require("bizcloud.requests")

local ffi = require("ffi")
require("resty.core.var")    -- declares ngx_http_lua_ffi_var_get
require("resty.core.hash")   -- declares ngx_http_lua_ffi_md5_bin
local get_request = require("resty.core.base").get_request

local ngx = ngx
local var = ngx.var
local C = ffi.C
local ffi_string = ffi.string
local tonumber, next = tonumber, next
local cache = state.cache
local sync = state.sync
local now = ngx.now
local current = requests.current
local picks = requests.pick
local log_stats = stats.log

local _M = {}

local BUCKETS = 10000
local DEFAULT_VAR = "http_x_user_id"
local DEFAULT_POLICY = { threshold = 0, whitelist = {}, fallback = true, var = DEFAULT_VAR }

-- The uid is hashed where nginx holds it: read through the FFI call under ngx.var (a pointer and
-- a length, no Lua string) and digested into a buffer of this worker (no digest string), so the
-- split interns no string per request: each one costs a hash-table walk in LuaJIT's string table
-- and garbage to collect. The whitelist is matched on the digest first (a 48-bit prefix, a number
-- key) and on the uid itself only when that prefix is one of a whitelisted uid's.
local digest = ffi.new("unsigned char[16]")
local value_ptr = ffi.new("char *[1]")
local value_len = ffi.new("size_t[1]")
local errmsg = ffi.new("char *[1]")
local NAME_MAX = 128
local name_buf = ffi.new("char[?]", NAME_MAX)   -- var_get lowercases the name here

local function md5_into(ptr, len)
    C.ngx_http_lua_ffi_md5_bin(ptr, len, digest)
end

-- The first 32 bits of the MD5, big-endian (= int(md5(uid).hexdigest()[:8], 16)), mod 10000.
local function digest_bucket()
    return (((digest[0] * 256 + digest[1]) * 256 + digest[2]) * 256 + digest[3]) % BUCKETS
end

local function digest_prefix()
    return ((((digest[0] * 256 + digest[1]) * 256 + digest[2]) * 256 + digest[3]) * 256 + digest[4]) * 256
        + digest[5]
end

function _M.bucket(uid)
    md5_into(uid, #uid)
    return digest_bucket()
end

-- policy.whitelist (uid -> true) -> {digest prefix -> true}, made once per compiled policy.
local whitelist_prefixes = setmetatable({}, { __mode = "k" })

local function prefixes_of(whitelist)
    local set = whitelist_prefixes[whitelist]
    if set == nil then
        set = {}
        for uid in pairs(whitelist) do
            md5_into(uid, #uid)
            set[digest_prefix()] = true
        end
        whitelist_prefixes[whitelist] = set
    end
    return set
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
    return _M.match(var.host, var.uri)
end

-- The group of this request's user: read from the variable the policy names (the default header
-- through $bizcloud_uid, which the configuration sets from $http_x_user_id: a variable nginx has
-- indexed, where $http_x_user_id by name scans its prefix variables and allocates a value).
-- No user ID: normal.
local function group_of(policy)
    local name = policy.var
    if name == DEFAULT_VAR then name = "bizcloud_uid" end
    if #name > NAME_MAX then name = "bizcloud_no_uid" end   -- no such header name in practice
    local rc = C.ngx_http_lua_ffi_var_get(get_request(), name, #name, name_buf, 0, value_ptr, value_len, errmsg)
    local len = tonumber(value_len[0])
    if rc ~= 0 or len == 0 then return "normal" end
    local ptr = value_ptr[0]
    md5_into(ptr, len)
    local whitelist = policy.whitelist
    if next(whitelist) ~= nil and prefixes_of(whitelist)[digest_prefix()] and whitelist[ffi_string(ptr, len)] then
        return "gray"
    end
    if policy.threshold > 0 and digest_bucket() < policy.threshold then return "gray" end
    return "normal"
end

-- The pick a request of this group carries: made once per peer list (a list is replaced, never
-- changed, when its upstream changes) and shared by every request routed to it, so routing
-- allocates nothing. Keyed weakly: a replaced list and its pick go with the last request using it.
local picks_by_peers = setmetatable({}, { __mode = "k" })
local refused_picks = {}   -- stats record -> the pick of a request refused for want of an instance

local function pick_of(route, group, peers)
    local pick = peers and picks_by_peers[peers]
    if pick then return pick end
    local records = route.stats
    local rec = records[group]
    if rec == nil then
        rec = stats.record(route.service, route.env, group)
        records[group] = rec
    end
    if peers == nil then
        pick = refused_picks[rec]
        if pick == nil then
            pick = { stats = rec }
            refused_picks[rec] = pick
        end
        return pick
    end
    -- slot: the balancer's round-robin key, the same for every list this upstream's group will have
    pick = { peers = peers, stats = rec, slot = route.key .. " " .. group }
    picks_by_peers[peers] = pick
    return pick
end

-- The worker's copy is brought up to the shared dict's generation once per tick of nginx's cached
-- clock (ms; it moves each time the worker's event loop wakes) rather than on every request: the
-- generation read locks the shared dict, whose mutex both workers would bounce between their
-- cores on every request. A push is seen by the first request served after the clock moved, so
-- at most one millisecond after it landed.
local synced_at = -1

-- set_by_lua: the group of this request, or "" when it is to be refused (see `refuse`).
function _M.choose()
    local t = now()
    if t ~= synced_at then
        synced_at = t
        sync()
    end
    local route = lookup()
    if route == nil then
        stats.no_route()
        picks[current()] = nil   -- `refuse` answers 404 for a request with no pick
        return ""
    end
    local policy = cache.policies[route.service] or DEFAULT_POLICY
    local group = group_of(policy)
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
    if peers == nil or #peers == 0 then
        picks[current()] = pick_of(route, group, nil)
        return ""
    end
    picks[current()] = pick_of(route, group, peers)
    return group
end

local function answer(status, message)
    ngx.status = status
    ngx.header["Content-Type"] = "text/plain"
    ngx.say(message)
    return ngx.exit(status)
end

-- content_by_lua for a request `choose` refused: 404 when no route matched, 503 when the
-- service has no instance (the pick it left names the service, environment and group).
function _M.refuse()
    local pick = picks[current()]
    if pick == nil then
        return answer(404, "bizcloud gateway: no route for host " .. var.host .. " path " .. var.uri)
    end
    local rec = pick.stats
    return answer(503, "bizcloud gateway: no instance of " .. rec.service .. " in " .. rec.env
        .. " (" .. rec.group .. ")")
end

-- log_by_lua: release the balancer's hold on the peer, count the request, clear its slots.
function _M.log()
    local r = current()
    local pick = picks[r]
    if pick == nil then return end
    picks[r] = nil
    balancer.finish(r)
    log_stats(pick.stats, ngx.status)
end

return _M
