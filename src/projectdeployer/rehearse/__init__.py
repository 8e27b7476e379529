"""Rehearse a deploy: instruments users may run against their own deployments (the load
generator, :class:`LoadGenerator`, which counts every failed request while you deploy).

An optional part of ProjectDeployer, described in docs/rehearse.md: its modules come with the
package, and what they need beyond the package's dependencies comes with the ``rehearse`` extra
(``pip install 'projectdeployer[rehearse]'``; nothing today). Nothing in the product imports it
(tests/unit/test_package_layout.py checks). The test suite's own fixtures
(the image bed, the fake OpenSearch node, the many-services projects) are in tests/support and
are not installed.

Re-exports are lazy so that ``python -m projectdeployer.rehearse.loadgen`` runs cleanly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loadgen import KindResult, LoadGenerator, LoadResult

__all__ = ["KindResult", "LoadGenerator", "LoadResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import loadgen  # noqa: PLC0415 - deferred: `python -m projectdeployer.rehearse.loadgen` must not find loadgen imported by its package (runpy warns)

        return getattr(loadgen, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
