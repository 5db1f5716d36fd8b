"""The studio repository that both sides share.

Layout, the schema of every file format (batch, render record, ledger line,
settings), spec hashing and the one git helper live here.  This package
imports neither side.
"""
from __future__ import annotations

__version__ = "0.1.0"
