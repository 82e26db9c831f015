"""Release: service configs turned into Kubernetes objects, deployed, scaled and released gray.

Templates (Jinja2, one set per service type) render typed parameters (``params``) into
manifests (``render``); ``deploy`` dry-runs, diffs and server-side-applies them and waits for the
rollout; the gray controller moves a service's two Deployments, the gateway's split and the SOA
split together. The release side writes to the cluster and the catalog; the monitor's events, not
this package, tell the data planes which pods serve.
"""
