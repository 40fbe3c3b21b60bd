"""Renderings of a run's machine-readable JSON (findings.json first; HTML and text from it)."""
