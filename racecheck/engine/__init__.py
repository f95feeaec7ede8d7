"""The happens-before engine: vector clocks, FastTrack shadow state, race findings."""
