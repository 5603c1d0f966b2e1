// See buffers.h. One mutex guards the cache: tensors are freed on whichever thread drops them last.
#include "buffers.h"
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>

#define SLOTS 64

static struct { void *p; size_t bytes; unsigned long age; } slots[SLOTS];
static int used;
static size_t cached, limit = (size_t)1 << 30;
static unsigned long clock_;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static size_t mapped_size(size_t bytes) {
    static size_t page;
    if (!page) page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

// Caller holds the lock.
static void drop(int i) {
    munmap(slots[i].p, slots[i].bytes);
    cached -= slots[i].bytes;
    slots[i] = slots[--used];
}

static void drop_oldest(void) {
    int oldest = 0;
    for (int i = 1; i < used; i++)
        if (slots[i].age < slots[oldest].age) oldest = i;
    drop(oldest);
}

void *uc_buffer_alloc(size_t bytes) {
    if (bytes < UC_BUFFER_LARGE) {
        void *p = NULL;
        return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL;
    }
    size_t size = mapped_size(bytes);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < used; i++)
        if (slots[i].bytes == size) {
            void *p = slots[i].p;
            cached -= size;
            slots[i] = slots[--used];
            pthread_mutex_unlock(&lock);
            return p;
        }
    pthread_mutex_unlock(&lock);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void uc_buffer_free(void *p, size_t bytes) {
    if (!p) return;
    if (bytes < UC_BUFFER_LARGE) { free(p); return; }
    size_t size = mapped_size(bytes);
    pthread_mutex_lock(&lock);
    if (size > limit) {
        pthread_mutex_unlock(&lock);
        munmap(p, size);
        return;
    }
    while (used > 0 && (used == SLOTS || cached + size > limit)) drop_oldest();
    slots[used].p = p;
    slots[used].bytes = size;
    slots[used].age = ++clock_;
    used++;
    cached += size;
    pthread_mutex_unlock(&lock);
}

void uc_buffer_cache_flush(void) {
    pthread_mutex_lock(&lock);
    while (used > 0) drop(used - 1);
    pthread_mutex_unlock(&lock);
}

size_t uc_buffer_cache_bytes(void) {
    pthread_mutex_lock(&lock);
    size_t n = cached;
    pthread_mutex_unlock(&lock);
    return n;
}

size_t uc_buffer_cache_limit(void) { return limit; }

void uc_buffer_set_cache_limit(size_t bytes) {
    pthread_mutex_lock(&lock);
    limit = bytes;
    while (used > 0 && cached > limit) drop_oldest();
    pthread_mutex_unlock(&lock);
}

#else   // no mmap: plain aligned malloc, nothing cached.

void *uc_buffer_alloc(size_t bytes) { void *p = NULL; return posix_memalign(&p, 64, bytes ? bytes : 1) == 0 ? p : NULL; }
void uc_buffer_free(void *p, size_t bytes) { (void)bytes; free(p); }
void uc_buffer_cache_flush(void) {}
size_t uc_buffer_cache_bytes(void) { return 0; }
size_t uc_buffer_cache_limit(void) { return 0; }
void uc_buffer_set_cache_limit(size_t bytes) { (void)bytes; }

#endif
