// Process helpers Swift cannot call directly (C variadic functions are not imported).
#ifndef MOE_RUN_CPROCESS_SHIM_H
#define MOE_RUN_CPROCESS_SHIM_H

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <errno.h>
#include <signal.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#endif

/// Asks the kernel to send `sig` to this process when its parent dies (Linux; returns -1
/// elsewhere). A worker uses it so that no worker outlives a killed scheduler.
static inline int moe_run_set_parent_death_signal(int sig) {
#ifdef __linux__
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0);
#else
    (void)sig;
    return -1;
#endif
}

/// A descriptor that becomes readable when process `pid` (a child) ends (Linux >= 5.3,
/// close-on-exec); -1 where pidfd_open(2) does not exist.
static inline int moe_run_pidfd_open(int pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    return -1;
#endif
}

/// getxattr(2) and setxattr(2) (<sys/xattr.h> is not in Swift's Glibc module): the value of the
/// extended attribute `name` of `path` into `value` (its length, or -1 with errno), and setting
/// it (0, or -1 with errno). -1 with ENOTSUP where there are none.
static inline long moe_run_getxattr(const char *path, const char *name, void *value, unsigned long size) {
#ifdef __linux__
    return (long)getxattr(path, name, value, size);
#else
    (void)path; (void)name; (void)value; (void)size;
    errno = ENOTSUP;
    return -1;
#endif
}

static inline int moe_run_setxattr(const char *path, const char *name, const void *value, unsigned long size) {
#ifdef __linux__
    return setxattr(path, name, value, size, 0);
#else
    (void)path; (void)name; (void)value; (void)size;
    errno = ENOTSUP;
    return -1;
#endif
}

#endif
