"""Reusable widgets: the virtual cost grid, the status line, display formatting."""
