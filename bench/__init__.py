"""Benchmarks of the agent and the cloud master against real Salt 3008 (`make bench`)."""
