#ifndef MOE_CBLAS_SHIM_H
#define MOE_CBLAS_SHIM_H
// OpenBLAS's CBLAS interface (Debian: libopenblas-dev; include path from pkg-config "openblas").
#include <cblas.h>
#endif
