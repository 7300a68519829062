"""Program section names -> (program type, expected attach type, sleepable), as data.

The conventions are libbpf's (its section definitions are the de facto standard): a name either
matches exactly, or as a prefix followed by "/" and a target (e.g. "fentry/do_nanosleep").
The numbers are the kernel's enum bpf_prog_type and enum bpf_attach_type.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ProgType(IntEnum):
    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class AttachType(IntEnum):
    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53


BPF_F_XDP_HAS_FRAGS = 1 << 5


@dataclass(frozen=True)
class SectionDef:
    """`name` matches exactly; with `prefix`, also "name/<target>"."""

    name: str
    prog_type: ProgType
    attach_type: int = 0
    sleepable: bool = False
    prefix: bool = False
    prog_flags: int = 0


P, A = ProgType, AttachType


def _d(name: str, pt: ProgType, at: int = 0, *, s: bool = False, pre: bool = False,
       flags: int = 0) -> SectionDef:
    return SectionDef(name, pt, int(at), s, pre, flags)


SECTION_DEFS: tuple[SectionDef, ...] = (
    _d("socket", P.SOCKET_FILTER, pre=True),
    _d("socket_filter", P.SOCKET_FILTER, pre=True),
    _d("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE),
    _d("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT),
    _d("kprobe", P.KPROBE, pre=True),
    _d("uprobe", P.KPROBE, pre=True),
    _d("uprobe.s", P.KPROBE, s=True, pre=True),
    _d("kretprobe", P.KPROBE, pre=True),
    _d("uretprobe", P.KPROBE, pre=True),
    _d("uretprobe.s", P.KPROBE, s=True, pre=True),
    _d("kprobe.multi", P.KPROBE, A.TRACE_KPROBE_MULTI, pre=True),
    _d("kretprobe.multi", P.KPROBE, A.TRACE_KPROBE_MULTI, pre=True),
    _d("uprobe.multi", P.KPROBE, A.TRACE_UPROBE_MULTI, pre=True),
    _d("uretprobe.multi", P.KPROBE, A.TRACE_UPROBE_MULTI, pre=True),
    _d("uprobe.multi.s", P.KPROBE, A.TRACE_UPROBE_MULTI, s=True, pre=True),
    _d("uretprobe.multi.s", P.KPROBE, A.TRACE_UPROBE_MULTI, s=True, pre=True),
    _d("ksyscall", P.KPROBE, pre=True),
    _d("kretsyscall", P.KPROBE, pre=True),
    _d("usdt", P.KPROBE, pre=True),
    _d("usdt.s", P.KPROBE, s=True, pre=True),
    _d("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    _d("tc/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _d("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    _d("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS),
    _d("tc", P.SCHED_CLS, pre=True),
    _d("classifier", P.SCHED_CLS, pre=True),
    _d("action", P.SCHED_ACT, pre=True),
    _d("tracepoint", P.TRACEPOINT, pre=True),
    _d("tp", P.TRACEPOINT, pre=True),
    _d("raw_tracepoint", P.RAW_TRACEPOINT, pre=True),
    _d("raw_tp", P.RAW_TRACEPOINT, pre=True),
    _d("raw_tracepoint.w", P.RAW_TRACEPOINT_WRITABLE, pre=True),
    _d("raw_tp.w", P.RAW_TRACEPOINT_WRITABLE, pre=True),
    _d("tp_btf", P.TRACING, A.TRACE_RAW_TP, pre=True),
    _d("fentry", P.TRACING, A.TRACE_FENTRY, pre=True),
    _d("fmod_ret", P.TRACING, A.MODIFY_RETURN, pre=True),
    _d("fexit", P.TRACING, A.TRACE_FEXIT, pre=True),
    _d("fentry.s", P.TRACING, A.TRACE_FENTRY, s=True, pre=True),
    _d("fmod_ret.s", P.TRACING, A.MODIFY_RETURN, s=True, pre=True),
    _d("fexit.s", P.TRACING, A.TRACE_FEXIT, s=True, pre=True),
    _d("freplace", P.EXT, pre=True),
    _d("lsm", P.LSM, A.LSM_MAC, pre=True),
    _d("lsm.s", P.LSM, A.LSM_MAC, s=True, pre=True),
    _d("lsm_cgroup", P.LSM, A.LSM_CGROUP, pre=True),
    _d("iter", P.TRACING, A.TRACE_ITER, pre=True),
    _d("iter.s", P.TRACING, A.TRACE_ITER, s=True, pre=True),
    _d("syscall", P.SYSCALL, s=True),
    _d("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, flags=BPF_F_XDP_HAS_FRAGS),
    _d("xdp/devmap", P.XDP, A.XDP_DEVMAP),
    _d("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, flags=BPF_F_XDP_HAS_FRAGS),
    _d("xdp/cpumap", P.XDP, A.XDP_CPUMAP),
    _d("xdp.frags", P.XDP, A.XDP, flags=BPF_F_XDP_HAS_FRAGS),
    _d("xdp", P.XDP, A.XDP, pre=True),
    _d("perf_event", P.PERF_EVENT),
    _d("lwt_in", P.LWT_IN),
    _d("lwt_out", P.LWT_OUT),
    _d("lwt_xmit", P.LWT_XMIT),
    _d("lwt_seg6local", P.LWT_SEG6LOCAL),
    _d("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS),
    _d("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER),
    _d("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT),
    _d("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT),
    _d("sk_skb", P.SK_SKB, pre=True),
    _d("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT),
    _d("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2),
    _d("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR),
    _d("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS),
    _d("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS),
    _d("cgroup/skb", P.CGROUP_SKB),
    _d("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE),
    _d("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    _d("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND),
    _d("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND),
    _d("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND),
    _d("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND),
    _d("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT),
    _d("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT),
    _d("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT),
    _d("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG),
    _d("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG),
    _d("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG),
    _d("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG),
    _d("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG),
    _d("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG),
    _d("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME),
    _d("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME),
    _d("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME),
    _d("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME),
    _d("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME),
    _d("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME),
    _d("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL),
    _d("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT),
    _d("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT),
    _d("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE),
    _d("struct_ops", P.STRUCT_OPS, pre=True),
    _d("struct_ops.s", P.STRUCT_OPS, s=True, pre=True),
    _d("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP),
    _d("netfilter", P.NETFILTER, A.NETFILTER),
)


def _matches(d: SectionDef, sec: str) -> bool:
    if sec == d.name:
        return True
    return d.prefix and sec.startswith(d.name + "/")


def lookup_section(sec: str) -> SectionDef | None:
    """The definition for program section `sec`; exact names win over prefixes."""
    best: SectionDef | None = None
    for d in SECTION_DEFS:
        if sec == d.name:
            return d
        if _matches(d, sec) and (best is None or len(d.name) > len(best.name)):
            best = d
    return best


def attach_target(sec: str) -> str | None:
    """What follows the first "/" ("fentry/do_nanosleep" -> "do_nanosleep"), if anything."""
    _, slash, rest = sec.partition("/")
    return rest if slash and rest else None
