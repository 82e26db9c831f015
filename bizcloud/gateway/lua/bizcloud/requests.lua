-- What a request carries from one phase to the next (router -> balancer -> log), kept in this
-- worker's tables keyed by the request itself: the address of its ngx_http_request_t (resty.core's
-- `get_request` returns it as a pointer cdata, new each call and so no table key; its address as a
-- number is, and the JIT compiles the conversion without an allocation).
--
-- Why not ngx.ctx: its first use in a request makes a table, refs it in the registry (an FFI call
-- to store the ref) and has a cleanup unref it when the request ends; three handlers reading it
-- went through ngx's magic-key getter each time. Here a request costs one slot in `pick` (set by
-- the router, cleared by the log phase) and one in `peer` (set by the balancer): an nginx worker
-- runs one request's handlers at a time, and a request's address is not reused before it is
-- freed, after its log phase. A slot a log phase never cleared (a request ended before it) holds
-- no per-request data and is overwritten by the next request at that address.
local ffi = require("ffi")
local get_request = require("resty.core.base").get_request

local cast, tonumber = ffi.cast, tonumber
local uintptr_t = ffi.typeof("uintptr_t")

-- The running request's key.
local function current()
    return tonumber(cast(uintptr_t, get_request()))
end

local _M = {
    current = current,
    pick = {},    -- request -> the router's pick: {peers = the group's peer list, stats = its record}
    peer = {},    -- request -> address of the peer the balancer last chose for it
    tried = {},   -- request -> {addr = true} of failed peers (made on the first retry only)
}

return _M
