"""Instruments users may run to rehearse a deploy (the load generator).

Re-exports are lazy so that ``python -m projectdeployer.rehearse.loadgen`` runs cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loadgen import KindResult, LoadGenerator, LoadResult

__all__ = ["KindResult", "LoadGenerator", "LoadResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import loadgen

        return getattr(loadgen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
