// Memory for large tensors: mapped pages kept for reuse by exact size.
//
// A UNet or VAE step allocates the same large activations every time. Handed back to the kernel when freed
// (glibc does that above its 32 MiB mmap ceiling), each one is page-faulted and zeroed again on the next step;
// kept in glibc's heap, they fragment it and the peak RSS drifts from run to run. Here buffers of at least
// UC_BUFFER_LARGE bytes are mapped directly, and a freed one waits in a small cache (bounded by
// uc_buffer_cache_limit bytes, oldest dropped first) until an allocation of the same mapped size takes it.
#pragma once
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Allocations from this size up are mapped and cached; smaller ones go to malloc.
#define UC_BUFFER_LARGE ((size_t)4 << 20)

/// At least `bytes` of 64-byte aligned, uninitialised memory (NULL when the system refuses it).
void *uc_buffer_alloc(size_t bytes);
/// Frees memory from uc_buffer_alloc; `bytes` must be the size it was allocated with.
void uc_buffer_free(void *p, size_t bytes);
/// Unmaps every cached buffer (e.g. between pipeline stages with --low-memory).
void uc_buffer_cache_flush(void);
/// Bytes held by the cache now, and the most it keeps (default 1 GiB).
size_t uc_buffer_cache_bytes(void);
size_t uc_buffer_cache_limit(void);
void uc_buffer_set_cache_limit(size_t bytes);

#ifdef __cplusplus
}
#endif
