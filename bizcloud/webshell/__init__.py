"""The WebShell: a terminal in the browser (or ``bizcloud shell``) bridged to a process in a container."""
