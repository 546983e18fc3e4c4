"""Power manager, power MCU protocol and simulator, and the power module."""
