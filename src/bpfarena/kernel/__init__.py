"""The kernel back end: real maps, arenas and programs through bpf(2) (`_sys/`).

Submodules are imported where used, so that `import bpfarena` never touches bpf(2):
`arena` (KernelArena), `features` (probes), `kfuncs` (BTF ids), `progs` (built-in kfunc programs).
"""
