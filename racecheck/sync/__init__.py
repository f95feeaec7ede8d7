"""Go-style primitives: channels, select, locks, WaitGroup, Once, Context, timers, atomics."""
