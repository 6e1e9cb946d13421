"""python -m mlserve: see mlserve.cli."""

from mlserve.cli import main

raise SystemExit(main())
