"""Automatic authorization: from the dependency graph and the live instances, the grants each pod IP
must hold (planner, pure), and the executors that converge MySQL/MariaDB accounts, SOA whitelists
and iptables chains to them, with a journal that explains every grant."""
