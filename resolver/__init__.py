"""idres resolver: the data plane of the identifier resolution service."""

__version__ = "0.1.0"
