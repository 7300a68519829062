"""What both back ends share about arenas: address math, flags, the front-end Arena class."""

from .base import Arena, ArenaGlobals
from .layout import (
    BPF_F_MMAPABLE,
    BPF_F_NO_USER_CONV,
    BPF_F_SEGV_ON_FAULT,
    MAX_PAGES,
    PAGE_SIZE,
)

__all__ = [
    "Arena",
    "ArenaGlobals",
    "BPF_F_MMAPABLE",
    "BPF_F_NO_USER_CONV",
    "BPF_F_SEGV_ON_FAULT",
    "MAX_PAGES",
    "PAGE_SIZE",
]
