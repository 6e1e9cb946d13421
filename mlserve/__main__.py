"""python -m mlserve: the same as the `mlserve` command (mlserve.cli)."""

from mlserve.cli import main

raise SystemExit(main())
