"""``dexgrasp serve``: uvicorn around :func:`service.app.create_app`.

With ``REDIS_URL`` set, rollouts go to that Redis and separate ``dexgrasp worker`` processes run
them. Without it, a private Redis server (password-protected, append-only file in
``DEXGRASP_EMBEDDED_DATA_DIR`` or a temporary directory) and supervised worker processes start with
the API, so one command gives the whole system.

SIGTERM shuts down as SIGINT does, in order: uvicorn stops accepting and finishes its requests,
then each worker gets one SIGTERM and is waited for, then Redis stops, then temporary directories
are removed (:meth:`sim_worker.embedded.EmbeddedSystem.stop`).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from .settings import get_settings

log = logging.getLogger("dexgrasp.service")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # outside uvicorn's own handlers (while the embedded system starts, and when uvicorn re-raises
    # the signal after its graceful shutdown) SIGTERM must unwind like SIGINT, through the finally
    # below, instead of killing the process with its children still running
    raise KeyboardInterrupt


def serve(host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from .app import create_app

    s = get_settings()
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    system = None
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not s.redis_url:
            from sim_worker.embedded import EmbeddedSystem

            system = EmbeddedSystem(workers=s.embedded_workers, data_dir=s.embedded_data_dir, log_level=s.log_level)
            url = system.start()
            s = s.model_copy(update={"redis_url": url})
            log.info("no REDIS_URL: started a private Redis at %s and %d supervised worker(s)",
                     system.redis.public_url, s.embedded_workers)
        app = create_app(s)
        uvicorn.run(app, host=host or s.host, port=port or s.port, log_level=s.log_level)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # an ordered stop is not interrupted half-way
            signal.signal(sig, signal.SIG_IGN)
        if system is not None:
            system.stop()
    return 0
