"""Thin HTTP handlers, one module per resource: parse the request, call the domain, answer."""
