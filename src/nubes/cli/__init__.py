"""The ``nubes`` command."""
