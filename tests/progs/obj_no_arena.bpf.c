/* Malformed on purpose: arena globals without an arena map. */
#define SEC(name) __attribute__((section(name), used))
int __attribute__((address_space(1))) g = 1;
SEC("syscall") int p(void *ctx) { return g; }
char LICENSE[] SEC("license") = "GPL";
