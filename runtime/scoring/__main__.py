"""``python -m runtime.scoring``: the scoring image's ENTRYPOINT."""

from runtime.scoring import main

raise SystemExit(main())
