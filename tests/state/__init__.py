"""State engine tests: golden cases from real Salt, state modules on real files and stubs."""
