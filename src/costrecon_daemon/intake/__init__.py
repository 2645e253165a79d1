"""Intake: vendor price files in, vendor costs out.

``watcher`` finds and settles files in the inbox and feeds them one at a time to ``importer``
(the import transaction); ``placement`` moves them afterwards; ``rematch`` holds the matcher
cache and re-matches rows when the catalogue or the mappings change; ``mappings`` is the
mappings service; ``queries`` are the read-only queries the API serves.
"""

from __future__ import annotations

from ..config import Config
from ..costs.table import CostTable
from ..store import Store
from .importer import Options, Prepared, commit_import, import_file, prepare
from .mappings import Mappings
from .rematch import MatcherCache, load_catalog_keys, load_mappings
from .search import SearchIndexer
from .watcher import Inbox


class Intake:
    """The three intake services over one matcher cache (built by the composition root)."""

    def __init__(self, cfg: Config, store: Store, table: CostTable):
        self.matching = MatcherCache(store, table)
        self.search = SearchIndexer(store)
        self.inbox = Inbox(cfg, store, self.matching, table, search=self.search)
        self.mappings = Mappings(store, self.matching, table)


__all__ = [
    "Inbox",
    "Intake",
    "Mappings",
    "MatcherCache",
    "Options",
    "Prepared",
    "commit_import",
    "import_file",
    "load_catalog_keys",
    "load_mappings",
    "prepare",
]
