"""Sync-capture backends: one per mechanism, chosen at start-up."""
