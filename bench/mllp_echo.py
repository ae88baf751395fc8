"""An MLLP echo server of the same stack as `sharedcare mllp` (its framing and asyncio listener),
answering every message with a fixed AA and storing nothing: the transport's floor for bench/ingest.py.
`python -m bench.mllp_echo PORT`."""

from __future__ import annotations

import asyncio
import sys

from sharedcare.ingest.hl7v2.mllp import Listener
from sharedcare.ingest.sources import Peer

ACK = "MSH|^~\\&|SHAREDCARE|LONDON|||20260101000000||ACK|1|P|2.4\rMSA|AA|1\r"


async def _answer(_payload: bytes, _peer: Peer) -> str:
    return ACK


async def main(port: int) -> None:
    listener = Listener(_answer)
    await listener.start("127.0.0.1", port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
