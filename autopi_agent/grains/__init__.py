"""Grains: facts about the agent's machine (OS, CPU, memory, network, Raspberry Pi board)."""
