"""formcheck: camera-based exercise form grading. This package holds the ``formcheck`` command."""

__version__ = "0.1.0"
