"""costrecon daemon: the engine. Never imports textual (tests/test_layout.py checks)."""

__version__ = "0.1.0"
API_VERSION = 1
