"""PURE: ELF + BTF -> ObjectSpec. Never imports _sys/, kernel/, vm/, ctypes or mmap."""

from .spec import (
    CoreRelo,
    FuncInfo,
    LineInfo,
    MapSpec,
    ObjectSpec,
    ProgramSpec,
    Relocation,
    RelocKind,
    VarSpec,
)

__all__ = [
    "CoreRelo",
    "FuncInfo",
    "LineInfo",
    "MapSpec",
    "ObjectSpec",
    "ProgramSpec",
    "RelocKind",
    "Relocation",
    "VarSpec",
]
