"""Liveness: thread leaks, deadlocks, lock-order inversions."""
