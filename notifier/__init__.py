"""Japan Post tracking notification daemon."""

__version__ = "0.1.0"
