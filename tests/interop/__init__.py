"""Interoperability tests against real Salt 3008 daemons."""
