/* slab: fixed-size objects in chunks mapped for them alone.
 *
 * Internal to proxy/. For short-lived per-connection state (a session's
 * handshake state) that must not be interleaved with long-lived objects in
 * the malloc heap: a burst of handshakes would leave holes between the
 * sessions that outlive them, and those holes are never given back. Here a
 * chunk goes back to the kernel (munmap) as soon as its last object is
 * freed, beyond `keep_empty` empty chunks kept for the next burst.
 *
 * One thread only (a loop's). Costs: alloc and free are O(1); a new chunk
 * costs three system calls (mmap, and munmap of the unaligned ends).
 */
#ifndef SOCKPOOL_SLAB_H
#define SOCKPOOL_SLAB_H

#include <stddef.h>

struct slab;

/* A slab of objects of `obj_size` bytes (1 .. 64 KiB), 16-byte aligned.
 * @return 0, -EINVAL, or -ENOMEM; *out is set only on 0. */
int slab_new(size_t obj_size, size_t keep_empty, struct slab **out);

/* Unmap every chunk; every object must have been freed. NULL is a no-op. */
void slab_destroy(struct slab *s);

/* A zeroed object, valid until slab_free(). @return NULL when out of
 * memory. */
void *slab_alloc(struct slab *s);

/* Give back an object from slab_alloc() of this slab; NULL is a no-op. */
void slab_free(struct slab *s, void *p);

/* Objects allocated now; chunks mapped now (empty ones kept included). */
size_t slab_in_use(const struct slab *s);
size_t slab_chunks(const struct slab *s);

#endif
