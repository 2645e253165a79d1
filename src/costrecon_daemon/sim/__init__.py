"""Faithful fake PSA servers and demo data, used by tests, benchmarks and `costrecon demo`."""
