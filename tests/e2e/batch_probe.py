"""A stand-in container image for the local Batch tests (``python -m tests.e2e.batch_probe``).

It writes its argv and the AWS_BATCH_* / job environment to ``$PROBE_DIR/<job id>-<attempt>.json``
and exits with the code ``PROBE_EXIT_<array index>`` says (0 by default), after sleeping
``PROBE_SLEEP`` seconds (the tests count overlapping containers and terminate a sleeping one).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    env = os.environ
    index = env.get("AWS_BATCH_JOB_ARRAY_INDEX", "none")
    out = Path(env["PROBE_DIR"])
    name = f"{env['AWS_BATCH_JOB_ID'].replace(':', '-')}-{env['AWS_BATCH_JOB_ATTEMPT']}.json"
    started = time.time()
    time.sleep(float(env.get("PROBE_SLEEP", "0")))
    record = {
        "argv": sys.argv[1:],
        "env": {k: v for k, v in env.items() if k.startswith(("AWS_", "PROBE_", "JOB_"))},
        "started": started,
        "ended": time.time(),
    }
    (out / name).write_text(json.dumps(record))
    print(f"probe shard {index} attempt {env['AWS_BATCH_JOB_ATTEMPT']}")
    return int(env.get(f"PROBE_EXIT_{index}", "0"))


if __name__ == "__main__":
    raise SystemExit(main())
