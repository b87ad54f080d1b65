"""mricurate's library: pure Python, no orchestration.

Every step is a function that takes typed input and returns a typed result;
``flows/`` and the CLI wire them together.
"""

from __future__ import annotations

__version__ = "0.1.0"
