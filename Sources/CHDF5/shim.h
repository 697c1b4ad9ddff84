#ifndef MOE_CHDF5_SHIM_H
#define MOE_CHDF5_SHIM_H
// HDF5's C API (Debian: libhdf5-dev; include path from pkg-config "hdf5").
// Many of HDF5's constants are macros that expand to a library call plus a global
// (e.g. H5T_NATIVE_FLOAT is `(H5OPEN H5T_NATIVE_FLOAT_g)`), which Swift cannot import.
// These inline getters make them visible to Swift, the way open-meteo's SwiftHDF5 does.
#include <hdf5.h>

static inline hid_t moe_H5P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t moe_H5S_ALL(void) { return H5S_ALL; }
static inline hsize_t moe_H5S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline unsigned moe_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned moe_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned moe_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned moe_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }

static inline hid_t moe_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t moe_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t moe_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t moe_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t moe_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t moe_H5T_NATIVE_UINT16(void) { return H5T_NATIVE_UINT16; }
static inline hid_t moe_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t moe_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t moe_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t moe_H5T_STD_I32LE(void) { return H5T_STD_I32LE; }
static inline hid_t moe_H5T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t moe_H5T_STD_U16LE(void) { return H5T_STD_U16LE; }
static inline hid_t moe_H5T_C_S1(void) { return H5T_C_S1; }
static inline size_t moe_H5T_VARIABLE(void) { return H5T_VARIABLE; }

static inline hid_t moe_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t moe_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t moe_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t moe_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t moe_H5P_DATASET_XFER(void) { return H5P_DATASET_XFER; }
static inline hid_t moe_H5E_DEFAULT(void) { return H5E_DEFAULT; }

// Object-type masks for H5Fget_obj_count (H5F_OBJ_LOCAL is a multi-line macro Swift cannot import).
static inline unsigned moe_H5F_OBJ_ALL(void) { return H5F_OBJ_ALL; }
static inline unsigned moe_H5F_OBJ_FILE(void) { return H5F_OBJ_FILE; }
static inline unsigned moe_H5F_OBJ_LOCAL(void) { return H5F_OBJ_LOCAL; }

#endif
