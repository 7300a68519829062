/* Compiled with -g0 in the tests: no .BTF, so variables come from ELF symbols alone. */
#define SEC(name) __attribute__((section(name), used))
int counter = 9;
long total;
SEC("syscall") int bump(void *ctx) { total += counter; return counter; }
char LICENSE[] SEC("license") = "GPL";
