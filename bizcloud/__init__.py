"""BizCloud: a private-cloud platform on Kubernetes that keeps everything around the pods true."""

__version__ = "0.1.0"
