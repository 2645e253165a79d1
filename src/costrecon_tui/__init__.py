"""costrecon TUI and command-line client. Talks to the daemon only through its local API."""

from costrecon_daemon import __version__

__all__ = ["__version__"]
