"""The protocol's state changes as Lua scripts: ``lua/*.lua``, shipped as package data and read with
:mod:`importlib.resources`. Each script is one atomic transition with its side effects (job hash,
acknowledgement, stream entry, event); the comment at the top of each file names its KEYS and ARGV.

Every script but ``heartbeat`` starts with ``lua/prelude.lua`` (the server clock, ``terminal()``,
``event()``). The stream caps are ``${NAME}`` placeholders filled in here from :mod:`.keys`, so
each number is written once."""

from __future__ import annotations

import functools
from importlib.resources import files
from string import Template

from .keys import DEAD_MAXLEN, EVENTS_MAXLEN

_PACKAGE = __name__.rpartition(".")[0]  # this package: the lua/ folder lives in it
SCRIPTS: tuple[str, ...] = ("enqueue", "start", "progress", "finish", "requeue", "cancel", "heartbeat", "reclaim")
_WITHOUT_PRELUDE = frozenset({"heartbeat"})  # needs none of the prelude's helpers


def _read(name: str) -> str:
    return files(_PACKAGE).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def source(name: str) -> str:
    """The full Lua text of one script (prelude included, placeholders filled in)."""
    if name not in SCRIPTS:
        raise KeyError(f"no Lua script {name!r}; known: {', '.join(SCRIPTS)}")
    text = _read(name) if name in _WITHOUT_PRELUDE else _read("prelude") + _read(name)
    return Template(text).substitute(EVENTS_MAXLEN=EVENTS_MAXLEN, DEAD_MAXLEN=DEAD_MAXLEN)


__all__ = ["SCRIPTS", "source"]
