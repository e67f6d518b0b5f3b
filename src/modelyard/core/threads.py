"""Background threads beside a server's event loop."""

from __future__ import annotations

import os
import sys
import threading

#: How much lower than the server the log's writer and upload threads run (Linux nice steps).
#: Their C work (Parquet encoding, zstd, an upload) runs without the GIL, so on a busy core only
#: the scheduler decides between it and the event loop; at nice 10 it weighs such a thread about
#: a tenth of the loop, which still leaves it far more than it needs: in the serving benchmark a
#: flush of about 14,000 records took 40 ms of the writer's CPU, spread over 330 ms, once a second.
BACKGROUND_NICE = 10


def run_in_background(nice: int = BACKGROUND_NICE) -> bool:
    """Lower the calling thread's scheduling priority by ``nice``; ``True`` when it changed.

    Only on Linux, where each thread has its own nice value (elsewhere ``setpriority`` on a
    thread id would reach the whole process, or another one); a refusal changes nothing.
    """
    if sys.platform != "linux" or nice <= 0:
        return False
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(current + nice, 19))
    except OSError:
        return False
    return True
