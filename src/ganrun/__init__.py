"""ganrun: a Hydra-driven experiment runner for GANs and VAEs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ganrun")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
