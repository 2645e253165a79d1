"""Costs: the cost table (the read model behind /v1/costs) and manual vendor costs."""

from .manual import revert_manual, set_manual
from .table import SORT_KEYS, STATES, CostTable, Row

__all__ = ["SORT_KEYS", "STATES", "CostTable", "Row", "revert_manual", "set_manual"]
