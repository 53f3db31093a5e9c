"""Readers of real data sets (SPIDER)."""
