"""Vendor price data: file readers, profiles and matching to the catalogue."""
