"""PSA connectors: one module per PSA, one protocol (base.py) they all speak."""
