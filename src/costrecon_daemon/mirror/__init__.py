"""The mirror: the PSA catalogue and contract lines copied into the database, and the loop that
keeps them fresh."""

from .loop import SyncLoop
from .sync import get_state, run_sync

__all__ = ["SyncLoop", "get_state", "run_sync"]
