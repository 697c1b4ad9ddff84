// Process helpers Swift cannot call directly (C variadic functions are not imported).
#ifndef MOE_RUN_CPROCESS_SHIM_H
#define MOE_RUN_CPROCESS_SHIM_H

#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <signal.h>

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

#endif
