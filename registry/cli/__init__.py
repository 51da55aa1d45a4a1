"""``rcc-node``: the one operator command line (typer). Top layer: may import everything.

Every command takes ``--data-dir`` (default ``RCC_DATA_DIR``, else ``./.rcc``); every command that prints
data takes ``--json``. Errors are one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from registry.cli.main import app, main

__all__ = ["app", "main"]
