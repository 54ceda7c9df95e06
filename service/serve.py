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

import asyncio
import logging
import signal
import sys
from types import FrameType
from typing import Any

from .settings import get_settings

log = logging.getLogger("dexgrasp.service")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # outside uvicorn's own handlers (while the embedded system starts, and when uvicorn re-raises
    # the signal after its graceful shutdown) SIGTERM must unwind like SIGINT, through the finally
    # below, instead of killing the process with its children still running
    raise KeyboardInterrupt


def idle_closing_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, closing a connection with no request in progress ``timeout_keep_alive``
    seconds after it opened or its last response: uvicorn's own keep-alive timer starts only after a
    response and stops at the first byte, so a client that connects and sends nothing, or half a
    request line, would otherwise hold the connection forever."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class IdleClosing(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        _idle: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_idle()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_idle()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._idle is not None:
                self._idle.cancel()
            super().connection_lost(exc)

        def _arm_idle(self) -> None:
            if self._idle is not None:
                self._idle.cancel()
            self._idle = self.loop.call_later(self.timeout_keep_alive, self._close_if_idle)

        def _close_if_idle(self) -> None:
            busy = self.cycle is not None and not self.cycle.response_complete  # the body timeout covers it
            if not busy and not self.transport.is_closing():
                self.transport.close()

    return IdleClosing


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
        uvicorn.run(app, host=host or s.host, port=port or s.port, log_level=s.log_level, http=idle_closing_protocol(),
                    timeout_keep_alive=s.keep_alive_s)
    except KeyboardInterrupt:
        pass
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):  # an ordered stop is not interrupted half-way
            signal.signal(sig, signal.SIG_IGN)
        if system is not None:
            system.stop()
    return 0
