// Shared-memory synchronisation helpers for MoEComm's SharedMemoryGroup (header only).
//
// Swift cannot call the variadic syscall(2), nor use C11 atomics on memory shared between
// processes, so these static inline helpers do it. Every pointer points into a MAP_SHARED
// mapping; the words are naturally aligned (the layout guarantees it). The futex calls use
// FUTEX_WAIT / FUTEX_WAKE WITHOUT FUTEX_PRIVATE_FLAG: the words are shared between processes.
#ifndef MOE_RUN_CSHM_SHIM_H
#define MOE_RUN_CSHM_SHIM_H
#include <stdint.h>
#include <stdatomic.h>
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <linux/futex.h>

// --- C11 atomics (sequentially consistent) on 32- and 64-bit words -------------------------

static inline uint32_t moe_atomic_load_u32(void *p) {
    return atomic_load((_Atomic uint32_t *)p);
}
static inline void moe_atomic_store_u32(void *p, uint32_t v) {
    atomic_store((_Atomic uint32_t *)p, v);
}
/// Returns the value before the addition.
static inline uint32_t moe_atomic_fetch_add_u32(void *p, uint32_t v) {
    return atomic_fetch_add((_Atomic uint32_t *)p, v);
}
/// Stores `desired` if the word holds `expected`; returns 1 if it did.
static inline int moe_atomic_cas_u32(void *p, uint32_t expected, uint32_t desired) {
    return atomic_compare_exchange_strong((_Atomic uint32_t *)p, &expected, desired) ? 1 : 0;
}
static inline uint64_t moe_atomic_load_u64(void *p) {
    return atomic_load((_Atomic uint64_t *)p);
}
static inline void moe_atomic_store_u64(void *p, uint64_t v) {
    atomic_store((_Atomic uint64_t *)p, v);
}

// --- futex(2) --------------------------------------------------------------------------------

/// Sleeps while `*addr == expected`, at most `timeout_ms` milliseconds. Returns 0 when woken,
/// otherwise the errno (EAGAIN: the word had changed already; ETIMEDOUT; EINTR). Callers
/// re-check their condition in every case.
static inline int moe_futex_wait(void *addr, uint32_t expected, int timeout_ms) {
    struct timespec ts;
    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, expected, &ts, (uint32_t *)0, 0);
    return r == 0 ? 0 : errno;
}

/// Wakes every process sleeping on `addr`; returns how many were woken (or -1).
static inline int moe_futex_wake(void *addr) {
    return (int)syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT_MAX, (void *)0, (uint32_t *)0, 0);
}

// --- unnamed segments: memfd_create(2) and file seals -----------------------------------------
// The constants are Linux's (<linux/memfd.h>, <linux/fcntl.h>); glibc declares them only under
// _GNU_SOURCE, which a module header cannot set for the system headers it shares with Swift.

/// An anonymous shared-memory file (memfd_create(2) with MFD_CLOEXEC | MFD_ALLOW_SEALING):
/// it has no name in any filesystem (`name` shows only in /proc/<pid>/fd), and the kernel frees
/// it when the last descriptor and mapping are gone. Returns the descriptor, or -1 and errno.
static inline int moe_memfd_create(const char *name) {
    return (int)syscall(SYS_memfd_create, name, 0x0001U | 0x0002U);
}

/// Seals the size of a memfd (F_ADD_SEALS with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL): no
/// process can then resize it under the others' mappings. Returns 0, or -1 and errno.
static inline int moe_seal_size(int fd) {
    return fcntl(fd, 1024 + 9, 0x0002 | 0x0004 | 0x0001);
}

// --- misc ----------------------------------------------------------------------------------

/// A CPU hint for spin loops.
static inline void moe_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// CLOCK_MONOTONIC in seconds.
static inline double moe_monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
