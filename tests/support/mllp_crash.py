"""`sharedcare mllp` that kills itself with SIGKILL at one point of receiving a message, like a crash
(security case CF2): `CRASH_AT=before-store` (received, not yet stored) or `after-store` (stored, not
yet acknowledged). Run as `python -m tests.support.mllp_crash --port N`; the rest of the arguments and
the SHAREDCARE_* environment are `sharedcare mllp`'s."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sharedcare.storage import inbox_store

POINT = os.environ.get("CRASH_AT", "")
_real = inbox_store.receive


def _receive(*args: Any, **kwargs: Any) -> Any:
    if POINT == "before-store":
        os.kill(os.getpid(), signal.SIGKILL)
    out = _real(*args, **kwargs)
    if POINT == "after-store":
        os.kill(os.getpid(), signal.SIGKILL)
    return out


inbox_store.receive = _receive  # type: ignore[assignment]

if __name__ == "__main__":
    from sharedcare.cli import main

    sys.argv = ["sharedcare", "mllp", *sys.argv[1:]]
    main()
