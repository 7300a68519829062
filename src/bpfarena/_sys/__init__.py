"""The thin Linux layer: bpf(2) and libc memory calls through ctypes, fd ownership, errno -> errors.

No policy lives here; `kernel/` builds the back end on top. Only `kernel/` may import this package.
"""

from . import attr, mem
from .attr import Cmd, MapInfo, ProgInfo
from .bpf import (
    ENOTSUPP,
    BatchResult,
    ProgFd,
    TestRunResult,
    bpf,
    btf_get_fd_by_id,
    btf_load,
    enable_stats,
    failing_insn,
    map_create,
    map_delete_elem,
    map_freeze,
    map_get_fd_by_id,
    map_get_next_id,
    map_get_next_key,
    map_info,
    map_lookup_and_delete_elem,
    map_lookup_batch,
    map_lookup_elem,
    map_update_elem,
    obj_get,
    obj_get_info_by_fd,
    obj_pin,
    prog_get_fd_by_id,
    prog_get_next_id,
    prog_info,
    prog_load,
    prog_stream_read,
    prog_test_run,
    prog_test_run_ctx_inout,
)
from .fd import Fd

__all__ = [
    "ENOTSUPP", "BatchResult", "Cmd", "Fd", "MapInfo", "ProgFd", "ProgInfo", "TestRunResult",
    "attr", "bpf", "btf_get_fd_by_id", "btf_load", "enable_stats", "failing_insn", "map_create",
    "map_delete_elem", "map_freeze", "map_get_fd_by_id", "map_get_next_id", "map_get_next_key",
    "map_info", "map_lookup_and_delete_elem", "map_lookup_batch", "map_lookup_elem",
    "map_update_elem", "mem", "obj_get", "obj_get_info_by_fd", "obj_pin", "prog_get_fd_by_id",
    "prog_get_next_id", "prog_info", "prog_load", "prog_stream_read", "prog_test_run",
    "prog_test_run_ctx_inout",
]
