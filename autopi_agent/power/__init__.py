"""Power management: the power MCU protocol and driver, the sleep/wake state machine, its runner.

Imported only when ``power.enabled`` (the settings module alone is imported for config
validation). Errors: see ``autopi_agent.power.errors`` (root ``PowerError``).
"""
