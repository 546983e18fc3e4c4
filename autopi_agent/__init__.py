"""The agent ("minion") for Raspberry Pi car dongles: Salt-compatible, asyncio, one owner per device."""

__version__ = "0.1.0"
