"""``python -m mpibench`` is the ``mpibench`` command."""

from .cli import main

raise SystemExit(main())
