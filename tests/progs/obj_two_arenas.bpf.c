/* Malformed on purpose: two arena maps (libbpf allows at most one). */
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
struct { __uint(type, 33); __uint(map_flags, 1024); __uint(max_entries, 1); } a1 SEC(".maps");
struct { __uint(type, 33); __uint(map_flags, 1024); __uint(max_entries, 1); } a2 SEC(".maps");
SEC("syscall") int p(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
