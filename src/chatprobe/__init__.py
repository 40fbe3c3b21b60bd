"""chatprobe: conformance and load testing for chat-completion API servers."""

__version__ = "0.1.0"

__all__ = ["__version__"]
