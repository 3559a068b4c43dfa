"""zpop: a hosted-mail service on Twisted."""

__version__ = "0.1.0"
