"""The agent's execution layer: context, module loader, job dispatcher (and later the daemon)."""
