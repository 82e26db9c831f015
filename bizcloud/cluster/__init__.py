"""The local real Kubernetes: built from Go modules, started and stopped as one unit."""
