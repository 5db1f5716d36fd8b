from __future__ import annotations

from renderloop.main import entry

entry()
