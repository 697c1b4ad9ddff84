// Shared-memory synchronisation helpers for MoEComm (filled by the collectives work).
#ifndef MOE_RUN_CSHM_SHIM_H
#define MOE_RUN_CSHM_SHIM_H
#include <stdint.h>
#endif
