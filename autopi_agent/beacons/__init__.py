"""Beacons: watch the car (OBD connection, trouble codes) and emit vehicle events about it."""
