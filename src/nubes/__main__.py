"""``python -m nubes`` is the ``nubes`` command."""

from nubes.cli.main import main

raise SystemExit(main())
