"""costrecon daemon: the engine. Never imports textual (tests/test_layout.py checks).

Package map (domain below the line never imports ``api`` or ``aiohttp.web``; see pyproject's
import-linter contracts):

- ``cli``        costrecond's command line (run, status, stop, sim).
- ``app``        the composition root: builds every part, owns start-up and shutdown.
- ``api``        the HTTP adapter: make_app, guard, errors → responses, field helpers, routes/.
  ---
- ``changes``    approval and push: plan, journal (states), push worker, approvals service.
- ``costs``      the cost table read model and manual vendor costs.
- ``intake``     the inbox: watcher, import transaction, placement, matcher cache, mappings.
- ``mirror``     the PSA mirror: sync of catalogue and contract lines and its periodic loop.
- ``vendors``    price-file profiles, readers (by stage), normalisation and matching.
- ``psa``        PSA connectors and their HTTP transport (never imports db/store).
- ``sim``        faithful PSA simulators for tests and the demo.
- ``activity``   the hash-chained activity log.  ``events``: the live event feed.
- ``store``/``db``/``migrations``  the database: single writer, schema, Alembic.
- ``config``, ``money``, ``errors``, ``jsonable``, ``lifecycle``, ``peers``, ``runtime``: shared
  basics (settings, Decimal money, the domain error hierarchy, JSON output, lock and socket,
  peer credentials, process-wide interpreter tweaks).
"""

__version__ = "0.1.0"
API_VERSION = 1
