"""Kernel bugs that a call from bpfarena (or its tests) could trip, and the releases that have them.

Some arena calls crash kernels that lack a later fix, and there is no probe that tells a fixed
kernel from a broken one without making the call. So a risky call runs only on a release known to
carry the fix; everywhere else it is refused before it reaches the kernel. docs/kernels.md lists
each bug with its fix and the releases affected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["KernelBug", "NODE_ID_OOPS", "has_fix", "release_version"]


def release_version(release: str) -> tuple[int, ...]:
    """(major, minor, patch) from a release string such as "6.18.15+deb13-amd64" (fewer if odd)."""
    nums: list[int] = []
    for part in release.replace("-", ".").replace("+", ".").split(".")[:3]:
        if not part.isdigit():
            break
        nums.append(int(part))
    return tuple(nums)


@dataclass(frozen=True)
class KernelBug:
    """A bug, the upstream fix, and the first release of each stable series that has it."""

    name: str
    summary: str
    fix: str                                   # upstream commit and subject
    fixed_mainline: tuple[int, int]            # first mainline release with the fix
    fixed_stable: dict[tuple[int, int], int]   # (major, minor) -> first patch level with it
    introduced: tuple[int, int]                # first mainline release with the bug

    def affects(self, release: str) -> bool:
        """True unless `release` is known to carry the fix (or predates the bug).

        A release string that cannot be read counts as affected: the risky call is then skipped,
        which costs a check, where guessing wrong could cost the machine.
        """
        v = release_version(release)
        if len(v) < 2:
            return True
        series = (v[0], v[1])
        if series < self.introduced:
            return False
        if series >= self.fixed_mainline:
            return False
        first = self.fixed_stable.get(series)
        patch = v[2] if len(v) > 2 else 0
        return first is None or patch < first


NODE_ID_OOPS = KernelBug(
    name="arena-node-id",
    summary=("bpf_arena_alloc_pages() passes its node_id to the page allocator unchecked: a node "
             "that does not exist (for example 4096) oopses the kernel in "
             "__alloc_frozen_pages_noprof <- bpf_map_alloc_pages <- bpf_arena_alloc_pages"),
    fix="2845989f2eba (\"bpf: Validate node_id in arena_alloc_pages()\")",
    introduced=(6, 9),
    fixed_mainline=(7, 1),
    # stable backports from the 2026-05-20 review cycle; 6.18.33 (not .32) to be safe, since
    # that review's numbering was corrected to 6.18.33 during the cycle
    fixed_stable={(7, 0): 10, (6, 18): 33, (6, 12): 91},
)

def has_fix(bug: KernelBug, release: str | None = None) -> bool:
    """True where the running kernel (or `release`) is known to be safe from `bug`."""
    return not bug.affects(release if release is not None else os.uname().release)
