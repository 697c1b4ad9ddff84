#ifndef MOE_CMPI_SHIM_H
#define MOE_CMPI_SHIM_H
// MPI's C API (Open MPI 4.1, Debian: libopenmpi-dev; include and link paths from pkg-config "ompi-c").
// Open MPI's predefined handles are macros that take the address of a library global and cast it
// (e.g. MPI_COMM_WORLD is `((MPI_Comm) &ompi_mpi_comm_world)`), and MPI_STATUS_IGNORE is a cast
// null pointer: Swift cannot import either. These inline getters make them visible to Swift
// (as CHDF5's shim does for HDF5). They are only valid after MPI_Init_thread, except the integer
// constants, which are plain values.
#include <mpi.h>

static inline MPI_Comm moe_MPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm moe_MPI_COMM_SELF(void) { return MPI_COMM_SELF; }
static inline MPI_Comm moe_MPI_COMM_NULL(void) { return MPI_COMM_NULL; }

static inline MPI_Datatype moe_MPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype moe_MPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype moe_MPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Datatype moe_MPI_INT(void) { return MPI_INT; }
static inline MPI_Datatype moe_MPI_INT64_T(void) { return MPI_INT64_T; }

static inline MPI_Op moe_MPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op moe_MPI_MAX(void) { return MPI_MAX; }

static inline MPI_Errhandler moe_MPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Errhandler moe_MPI_ERRORS_ARE_FATAL(void) { return MPI_ERRORS_ARE_FATAL; }

static inline MPI_Status *moe_MPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline void *moe_MPI_IN_PLACE(void) { return MPI_IN_PLACE; }

static inline int moe_MPI_SUCCESS(void) { return MPI_SUCCESS; }
static inline int moe_MPI_UNDEFINED(void) { return MPI_UNDEFINED; }
static inline int moe_MPI_ANY_SOURCE(void) { return MPI_ANY_SOURCE; }
static inline int moe_MPI_ANY_TAG(void) { return MPI_ANY_TAG; }
static inline int moe_MPI_MAX_PROCESSOR_NAME(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int moe_MPI_MAX_ERROR_STRING(void) { return MPI_MAX_ERROR_STRING; }

static inline int moe_MPI_THREAD_SINGLE(void) { return MPI_THREAD_SINGLE; }
static inline int moe_MPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }
static inline int moe_MPI_THREAD_SERIALIZED(void) { return MPI_THREAD_SERIALIZED; }
static inline int moe_MPI_THREAD_MULTIPLE(void) { return MPI_THREAD_MULTIPLE; }

/// The source of a received message (MPI_Status's field is named differently per implementation).
static inline int moe_MPI_status_source(const MPI_Status *s) { return s->MPI_SOURCE; }

#endif
