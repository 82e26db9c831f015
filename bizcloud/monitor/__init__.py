"""k8s-monitor: pods in, instance events out, delivered to every subscriber."""
