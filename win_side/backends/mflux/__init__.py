"""The mflux backend (``backend``) and its safety wrapper (``guard``): one mflux run at a time on a Mac."""
from win_side.backends.mflux.backend import MfluxBackend, MfluxLane, command_line, find_program

__all__ = ["MfluxBackend", "MfluxLane", "command_line", "find_program"]
