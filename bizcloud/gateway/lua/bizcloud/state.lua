-- The gateway's routing state: pushed in on the admin port, kept in a shared dict, copied per worker.
--
-- The syncer (Python) POSTs a full state (every upstream whole) or a delta (per upstream, the peers
-- to put and the uids to drop: `patch_upstream`), each with the catalog revision it is current at;
-- the monitor POSTs a delta after each commit (`gateway/direct.py`). A delta older than the state
-- is ignored. `push` validates everything before it writes anything (a malformed push answers 400
-- and the previous state stays in force), then stores each upstream (service/env) as one JSON
-- string with its own version, and bumps `generation`. A worker compares `generation` on each
-- request and, only when it moved, decodes the upstreams whose version changed into plain Lua
-- tables: the request path never decodes JSON. `init` seeds the dict from a file in the master,
-- before any worker exists, so a (re)started nginx answers its first request with the catalog's
-- routes.
local cjson = require("cjson.safe")

local ngx = ngx
local dict = ngx.shared.bizcloud_state

local _M = {}

-- per-worker copy
local cache = {
    generation = -1,
    routes_version = -1,
    policies_version = -1,
    by_host = {},        -- host -> list of {prefix, service, env, key}, longest prefix first
    any_host = {},       -- routes for host "*"
    policies = {},       -- service -> compiled policy
    upstreams = {},      -- key -> {normal = {peers}, gray = {peers}}
    versions = {},       -- key -> version decoded
}
_M.cache = cache

local GROUPS = { "normal", "gray" }
local UID_SOURCES = { header = true, cookie = true, query = true }

-- validation ------------------------------------------------------------------------------------

local function is_ipv4(ip)
    local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return false end
    for _, part in ipairs({ a, b, c, d }) do
        if tonumber(part) > 255 or (#part > 1 and part:sub(1, 1) == "0") then return false end
    end
    return true
end

local function is_ip(ip)
    if type(ip) ~= "string" then return false end
    return is_ipv4(ip) or (ip:find(":", 1, true) ~= nil and ip:match("^[%x:%.]+$") ~= nil and #ip <= 45)
end

local function check_peer(peer, where)
    if type(peer) ~= "table" then return where .. " is not an object" end
    if not is_ip(peer.ip) then return where .. ".ip " .. tostring(peer.ip) .. " is not an IP address" end
    local port = peer.port
    if type(port) ~= "number" or port ~= math.floor(port) or port < 1 or port > 65535 then
        return where .. ".port " .. tostring(port) .. " is not a TCP port"
    end
    if peer.uid ~= nil and type(peer.uid) ~= "string" then return where .. ".uid is not a string" end
    return nil
end

local function check_key(key, field)
    if type(key) ~= "string" or not key:match("^[%w%-]+/[%w%-]+$") then
        return field .. ": key " .. tostring(key) .. " is not service/env"
    end
    return nil
end

local function check_upstream(key, up)
    local err = check_key(key, "upstreams")
    if err then return err end
    if type(up) ~= "table" then return "upstreams." .. key .. " is not an object" end
    for _, group in ipairs(GROUPS) do
        local peers = up[group]
        if peers ~= nil then
            if type(peers) ~= "table" then return "upstreams." .. key .. "." .. group .. " is not a list" end
            for i, peer in ipairs(peers) do
                local err = check_peer(peer, "upstreams." .. key .. "." .. group .. "[" .. i .. "]")
                if err then return err end
            end
        end
    end
    for name in pairs(up) do
        if name ~= "normal" and name ~= "gray" then
            return "upstreams." .. key .. ": unknown group " .. tostring(name)
        end
    end
    return nil
end

-- One upstream's part of a delta: {"put": [peers, each with its group], "drop": [uids]}.
local function check_peer_ops(key, ops)
    local err = check_key(key, "peers")
    if err then return err end
    local where = "peers." .. key
    if type(ops) ~= "table" then return where .. " is not an object" end
    for name in pairs(ops) do
        if name ~= "put" and name ~= "drop" then return where .. ": unknown field " .. tostring(name) end
    end
    if ops.put ~= nil and type(ops.put) ~= "table" then return where .. ".put is not a list" end
    for i, peer in ipairs(ops.put or {}) do
        local at = where .. ".put[" .. i .. "]"
        err = check_peer(peer, at)
        if err then return err end
        if type(peer.uid) ~= "string" then return at .. ".uid is required" end
        if peer.group ~= "normal" and peer.group ~= "gray" then
            return at .. ".group must be normal or gray"
        end
    end
    if ops.drop ~= nil and type(ops.drop) ~= "table" then return where .. ".drop is not a list" end
    for i, uid in ipairs(ops.drop or {}) do
        if type(uid) ~= "string" then return where .. ".drop[" .. i .. "] is not a uid" end
    end
    return nil
end

local function check_route(route, i)
    local where = "routes[" .. i .. "]"
    if type(route) ~= "table" then return where .. " is not an object" end
    if type(route.host) ~= "string" or route.host == "" then return where .. ".host is missing" end
    if type(route.path_prefix) ~= "string" or route.path_prefix:sub(1, 1) ~= "/" then
        return where .. ".path_prefix must start with /"
    end
    if type(route.service) ~= "string" or type(route.env) ~= "string" then
        return where .. ".service and .env are required"
    end
    return nil
end

local function check_policy(name, policy)
    local where = "policies." .. tostring(name)
    if type(policy) ~= "table" then return where .. " is not an object" end
    local ratio = policy.ratio
    if ratio ~= nil and (type(ratio) ~= "number" or ratio < 0 or ratio > 100) then
        return where .. ".ratio must be a number from 0 to 100"
    end
    if policy.whitelist ~= nil and type(policy.whitelist) ~= "table" then
        return where .. ".whitelist must be a list"
    end
    if policy.uid_source ~= nil and not UID_SOURCES[policy.uid_source] then
        return where .. ".uid_source must be header, cookie or query"
    end
    if policy.uid_name ~= nil and (type(policy.uid_name) ~= "string"
            or not policy.uid_name:match("^[%w!#$%%&'*+.^_`|~-]+$")) then
        return where .. ".uid_name is not a header, cookie or argument name"
    end
    return nil
end

-- Everything a push may hold, checked before anything is written. Returns an error string or nil.
local function check(body)
    if type(body) ~= "table" then return "body is not a JSON object" end
    if type(body.revision) ~= "number" or body.revision < 0 then return "revision must be a number >= 0" end
    if body.routes ~= nil then
        if type(body.routes) ~= "table" then return "routes must be a list" end
        for i, route in ipairs(body.routes) do
            local err = check_route(route, i)
            if err then return err end
        end
    end
    if body.policies ~= nil then
        if type(body.policies) ~= "table" then return "policies must be an object" end
        for name, policy in pairs(body.policies) do
            local err = check_policy(name, policy)
            if err then return err end
        end
    end
    if body.upstreams ~= nil then
        if type(body.upstreams) ~= "table" then return "upstreams must be an object" end
        for key, up in pairs(body.upstreams) do
            local err = check_upstream(key, up)
            if err then return err end
        end
    end
    if body.peers ~= nil then
        if body.full == true then return "peers: a full push carries upstreams whole" end
        if type(body.peers) ~= "table" then return "peers must be an object" end
        for key, ops in pairs(body.peers) do
            local err = check_peer_ops(key, ops)
            if err then return err end
        end
    end
    if body.full ~= true and body.full ~= false and body.full ~= nil then return "full must be a boolean" end
    if body.base ~= nil and (type(body.base) ~= "number" or body.base < 0 or body.base > body.revision) then
        return "base must be a number from 0 to revision"
    end
    return nil
end

-- writing the shared dict -----------------------------------------------------------------------

local function set(key, value)
    local ok, err, forcible = dict:set(key, value)
    if not ok then return "shared dict full: " .. tostring(err) end
    if forcible then ngx.log(ngx.WARN, "bizcloud_state evicted entries; raise lua_shared_dict size") end
    return nil
end

local function store_upstream(key, up, generation, now)
    -- keep each peer's first-seen time across deltas (the bench reads it as "routable since")
    local old = cjson.decode(dict:get("up:" .. key) or "{}") or {}
    local seen = {}
    for _, group in ipairs(GROUPS) do
        for _, peer in ipairs(old[group] or {}) do seen[peer.ip .. ":" .. peer.port] = peer.added end
    end
    local out = { normal = {}, gray = {} }
    for _, group in ipairs(GROUPS) do
        for _, peer in ipairs(up[group] or {}) do
            local addr = peer.ip .. ":" .. peer.port
            out[group][#out[group] + 1] = { ip = peer.ip, port = peer.port, uid = peer.uid,
                                             added = seen[addr] or now }
        end
    end
    local empty = #out.normal == 0 and #out.gray == 0
    local err = set("up:" .. key, empty and nil or cjson.encode(out))
    if err then return err end
    return set("upver:" .. key, generation)
end

-- A delta's peers for one upstream: drop the uids, put the peers (a put replaces the peer of its
-- uid in either group). Only the named peers are touched: the rest of the stored upstream is
-- decoded and encoded again by cjson, but never walked peer by peer in Lua or re-validated.
local function patch_upstream(key, ops, generation, now)
    local up = cjson.decode(dict:get("up:" .. key) or "{}") or {}
    local gone, put_at = {}, {}   -- put_at: ip -> port -> the time a stored peer got that address
    for _, uid in ipairs(ops.drop or {}) do gone[uid] = true end
    for _, peer in ipairs(ops.put or {}) do
        gone[peer.uid] = true
        put_at[peer.ip] = put_at[peer.ip] or {}
        put_at[peer.ip][peer.port] = false
    end
    local out = { normal = {}, gray = {} }
    for _, group in ipairs(GROUPS) do
        local kept = out[group]
        for _, peer in ipairs(up[group] or {}) do
            local ports = put_at[peer.ip]
            if ports and ports[peer.port] == false then ports[peer.port] = peer.added end   -- kept its time
            if not gone[peer.uid] then kept[#kept + 1] = peer end
        end
    end
    for _, peer in ipairs(ops.put or {}) do
        local kept = out[peer.group]
        kept[#kept + 1] = { ip = peer.ip, port = peer.port, uid = peer.uid,
                            added = put_at[peer.ip][peer.port] or now }
    end
    local empty = #out.normal == 0 and #out.gray == 0
    local err = set("up:" .. key, empty and nil or cjson.encode(out))
    if err then return err, false end
    return set("upver:" .. key, generation), not empty
end

local function apply(body)
    local current = dict:get("revision") or -1
    if not body.full and current < 0 then
        return 409, "this gateway has no state yet: send a full push"
    end
    if not body.full and body.revision < current then
        return 200, "stale: gateway is at revision " .. current
    end
    -- A delta continues `base`: applied over any revision from `base` to its own (its puts and
    -- drops are each peer's state at its revision, so applying them again changes nothing), never
    -- over an older one, which would skip the changes in between. Two writers share this: the
    -- monitor pushes each commit, the syncer follows the change stream and brings what was missed.
    if not body.full and body.base ~= nil and body.base > current then
        return 409, "gap: the delta continues revision " .. body.base .. ", this gateway is at " .. current
    end
    if body.full then
        body.routes, body.policies = body.routes or {}, body.policies or {}
    end
    local generation = (dict:get("generation") or 0) + 1
    ngx.update_time()
    local now = ngx.now()
    local keys = cjson.decode(dict:get("keys") or "{}") or {}
    local wanted = {}
    if body.full then
        for key in pairs(keys) do wanted[key] = { normal = {}, gray = {} } end
    end
    for key, up in pairs(body.upstreams or {}) do wanted[key] = up end
    for key, up in pairs(wanted) do
        local err = store_upstream(key, up, generation, now)
        if err then return 500, err end
        local has = (#(up.normal or {}) + #(up.gray or {})) > 0
        keys[key] = has or nil
    end
    for key, ops in pairs(body.peers or {}) do
        local err, has = patch_upstream(key, ops, generation, now)
        if err then return 500, err end
        keys[key] = has or nil
    end
    local err = set("keys", cjson.encode(keys))
    if err then return 500, err end
    if body.routes ~= nil then
        err = set("routes", cjson.encode(body.routes)) or set("routesver", generation)
        if err then return 500, err end
    end
    if body.policies ~= nil then
        local policies = body.full and {} or (cjson.decode(dict:get("policies") or "{}") or {})
        for name, policy in pairs(body.policies) do policies[name] = policy end
        err = set("policies", cjson.encode(policies)) or set("policiesver", generation)
        if err then return 500, err end
    end
    set("revision", body.revision)
    set("generation", generation)
    return 200, "applied revision " .. body.revision
end

-- Validate then apply one push body (a JSON string). Returns status, message.
function _M.push(raw)
    if type(raw) ~= "string" or raw == "" then return 400, "empty body: send a JSON object" end
    local body, decode_err = cjson.decode(raw)
    if body == nil then return 400, "body is not JSON: " .. tostring(decode_err) end
    local err = check(body)
    if err then return 400, err end
    return apply(body)
end

-- The admin endpoint: POST a push.
function _M.serve_push()
    ngx.req.read_body()
    local raw = ngx.req.get_body_data()
    if raw == nil then
        local path = ngx.req.get_body_file()
        if path then
            local f = io.open(path, "rb")
            if f then raw = f:read("*a"); f:close() end
        end
    end
    local status, message = _M.push(raw)
    local answer = cjson.encode({ status = status, message = message, revision = dict:get("revision") or -1,
                                  generation = dict:get("generation") or 0 }) .. "\n"
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #answer   -- not chunked: the monitor reads answers back to back
    ngx.print(answer)
end

-- The admin endpoint: GET the upstream table as the shared dict holds it.
function _M.serve_table()
    local keys = cjson.decode(dict:get("keys") or "{}") or {}
    local upstreams = {}
    for key in pairs(keys) do upstreams[key] = cjson.decode(dict:get("up:" .. key) or "{}") end
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode({
        revision = dict:get("revision") or -1,
        generation = dict:get("generation") or 0,
        worker_pid = ngx.worker.pid(),
        routes = cjson.decode(dict:get("routes") or "[]"),
        policies = cjson.decode(dict:get("policies") or "{}"),
        upstreams = upstreams,
    }))
end

-- per-worker sync -------------------------------------------------------------------------------

local function compile_routes(routes)
    local by_host, any_host = {}, {}
    for _, r in ipairs(routes or {}) do
        local entry = { prefix = r.path_prefix, service = r.service, env = r.env,
                        key = r.service .. "/" .. r.env, stats = {} }   -- stats: group -> record
        local list = any_host
        if r.host ~= "*" then
            local host = r.host:lower()
            by_host[host] = by_host[host] or {}
            list = by_host[host]
        end
        list[#list + 1] = entry
    end
    local longest_first = function(a, b) return #a.prefix > #b.prefix end
    for _, list in pairs(by_host) do table.sort(list, longest_first) end
    table.sort(any_host, longest_first)
    -- one route for every host and path: the router need not read either
    local catch_all = next(by_host) == nil and #any_host == 1 and any_host[1].prefix == "/" and any_host[1] or nil
    cache.by_host, cache.any_host, cache.catch_all = by_host, any_host, catch_all
end

local function compile_policies(policies)
    local compiled = {}
    for name, p in pairs(policies or {}) do
        local whitelist = {}
        for _, uid in ipairs(p.whitelist or {}) do whitelist[tostring(uid)] = true end
        local source, uid_name = p.uid_source or "header", p.uid_name or "X-User-Id"
        local var
        if source == "header" then
            var = "http_" .. uid_name:lower():gsub("-", "_")
        elseif source == "cookie" then
            var = "cookie_" .. uid_name
        else
            var = "arg_" .. uid_name
        end
        compiled[name] = { threshold = (p.ratio or 0) * 100, whitelist = whitelist, fallback = p.fallback ~= false,
                           var = var }
    end
    cache.policies = compiled
end

-- Bring this worker's copy up to the shared dict's generation (cheap when nothing changed).
function _M.sync()
    local generation = dict:get("generation") or 0
    if generation == cache.generation then return end
    local routes_version = dict:get("routesver") or 0
    if routes_version ~= cache.routes_version then
        compile_routes(cjson.decode(dict:get("routes") or "[]"))
        cache.routes_version = routes_version
    end
    local policies_version = dict:get("policiesver") or 0
    if policies_version ~= cache.policies_version then
        compile_policies(cjson.decode(dict:get("policies") or "{}"))
        cache.policies_version = policies_version
    end
    local keys = cjson.decode(dict:get("keys") or "{}") or {}
    for key in pairs(cache.upstreams) do
        if not keys[key] then cache.upstreams[key], cache.versions[key] = nil, nil end
    end
    for key in pairs(keys) do
        local version = dict:get("upver:" .. key)
        if version ~= cache.versions[key] then
            local up = cjson.decode(dict:get("up:" .. key) or "{}") or {}
            for _, group in ipairs(GROUPS) do
                local peers = up[group] or {}
                for _, peer in ipairs(peers) do peer.addr = peer.ip .. ":" .. peer.port end
                up[group] = peers
            end
            cache.upstreams[key], cache.versions[key] = up, version
        end
    end
    cache.generation = generation
end

-- Master: seed the dict from the file the gateway process wrote from the catalog.
function _M.init(seed_path)
    local f = io.open(seed_path, "rb")
    if not f then
        ngx.log(ngx.WARN, "no seed at ", seed_path, ": starting with no routes")
        return
    end
    local raw = f:read("*a")
    f:close()
    local status, message = _M.push(raw)
    if status ~= 200 then
        error("the seed " .. seed_path .. " was refused: " .. message)
    end
end

function _M.init_worker()
    _M.sync()
end

return _M
