"""Thin click command line over ``pipeline``."""
