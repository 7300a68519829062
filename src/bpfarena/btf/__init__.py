"""BTF: parsing (.BTF, .BTF.ext, /sys/kernel/btf/*), type layout, name lookup, CO-RE. Pure."""

from .btf import BTF, parse, parse_file
from .ext import BTFExt, CoreReloRecord, FuncInfoRecord, LineInfoRecord, parse_ext
from .types import (
    INT_BOOL,
    INT_CHAR,
    INT_SIGNED,
    EnumValue,
    Kind,
    Member,
    MemberInfo,
    Param,
    Type,
    VarSecinfo,
)

__all__ = [
    "BTF",
    "parse",
    "parse_file",
    "parse_ext",
    "BTFExt",
    "FuncInfoRecord",
    "LineInfoRecord",
    "CoreReloRecord",
    "Kind",
    "Type",
    "Member",
    "MemberInfo",
    "EnumValue",
    "Param",
    "VarSecinfo",
    "INT_SIGNED",
    "INT_CHAR",
    "INT_BOOL",
]
