"""Swap engines (classic, neural) behind a registry, and the neural model
registry. Imports ``core.faces`` and ``core.media``.
"""
