"""``genrec foundations gmm|vbgmm|beta``."""

from __future__ import annotations

from genrec.foundations.cli import foundations_cli

COMMANDS = [foundations_cli]
