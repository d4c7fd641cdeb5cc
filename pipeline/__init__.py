"""pipeline: a daemonless, declarative fleet builder for OCI container images."""

__version__ = "0.1.0"
