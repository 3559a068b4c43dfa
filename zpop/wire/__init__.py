"""Plumbing of the wire formats every layer shares, one implementation each
and importing nothing of zpop above it: the address grammar (``addresses``,
``paths``), line ends (``lines``) and dot-stuffing (``dotstuff``)."""
