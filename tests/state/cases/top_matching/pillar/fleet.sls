fleet: berlin
