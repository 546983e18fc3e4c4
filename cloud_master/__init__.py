"""The cloud master: key store, request server and publisher, job cache, client API and CLI."""

__version__ = "0.1.0"
