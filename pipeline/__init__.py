"""Thin services wiring adapters to the core, and the ``claire`` command line."""
