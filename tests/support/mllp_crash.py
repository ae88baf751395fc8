"""`sharedcare mllp` that kills itself with SIGKILL at one point of receiving a message, like a crash
(security case CF2): `CRASH_AT=before-store` (received, not yet stored) or `after-store` (stored, not
yet acknowledged). Run as `python -m tests.support.mllp_crash --port N`; the rest of the arguments and
the SHAREDCARE_* environment are `sharedcare mllp`'s."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sharedcare.ingest.inbox import Inbox
from sharedcare.storage import inbox_store

POINT = os.environ.get("CRASH_AT", "")
_real_receive = inbox_store.receive_on
_real_stored = Inbox._stored


def _receive_on(*args: Any, **kwargs: Any) -> Any:
    if POINT == "before-store":  # inside the commit that would store it: nothing is stored
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_receive(*args, **kwargs)


def _stored(self: Inbox, *args: Any, **kwargs: Any) -> Any:
    if POINT == "after-store":  # committed, the acknowledgement not yet sent
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_stored(self, *args, **kwargs)


inbox_store.receive_on = _receive_on  # type: ignore[assignment]
Inbox._stored = _stored  # type: ignore[method-assign]

if __name__ == "__main__":
    from sharedcare.cli import main

    sys.argv = ["sharedcare", "mllp", *sys.argv[1:]]
    main()
