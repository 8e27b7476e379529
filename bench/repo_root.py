"""Puts the repository root on ``sys.path``, so that a bench run as ``python bench/NAME.py``
can import the test suite's fixtures (``tests.support``: the image bed's tags, the many-services
projects), which stay in the repository and are not installed with the package.

Import it before anything from ``tests``: ``import repo_root  # noqa: F401``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
