"""Plumbing of the wire formats every layer shares: one implementation
each, importing nothing of zpop above it (addresses today)."""
