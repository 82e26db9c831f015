"""Access-layer gateway: nginx + Lua upstreams that follow the catalog without reloads."""
