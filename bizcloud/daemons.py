"""BizCloud's long-running processes, wired from their parts: `bizcloud server` and `bizcloud monitor`."""
