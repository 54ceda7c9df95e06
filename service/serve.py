"""``dexgrasp serve``: uvicorn around :func:`service.app.create_app`.

With ``REDIS_URL`` set, rollouts go to that Redis and separate ``dexgrasp worker`` processes run
them. Without it, a private Redis server and an in-process worker pool start with the API, so one
command gives the whole system.
"""

from __future__ import annotations

import logging
import sys

from .settings import get_settings

log = logging.getLogger("dexgrasp.service")


def serve(host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from .app import create_app

    s = get_settings()
    logging.basicConfig(level=s.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    system = None
    if not s.redis_url:
        from sim_worker.embedded import EmbeddedSystem

        system = EmbeddedSystem(workers=s.embedded_workers)
        url = system.start()
        s = s.model_copy(update={"redis_url": url})
        log.info("no REDIS_URL: started a private Redis at %s and %d in-process worker(s)", url, s.embedded_workers)
    try:
        app = create_app(s)
        uvicorn.run(app, host=host or s.host, port=port or s.port, log_level=s.log_level)
    finally:
        if system is not None:
            system.stop()
    return 0
