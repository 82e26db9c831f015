"""Service management center: services, environments, instances, groups, routes, the change stream."""
