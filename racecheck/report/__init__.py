"""Findings (the one model) and the renderers that turn them into text, rich, JSON, SARIF."""
