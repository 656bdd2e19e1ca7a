/* slab: fixed-size objects in aligned, privately mapped chunks (slab.h). */
#include "slab.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SLAB_MIN_CHUNK (32 * 1024)
#define SLAB_MIN_OBJS  8 /* per chunk, at least */

/* At the start of each chunk; the chunk is aligned to its size, so an
 * object finds its chunk by masking its address. */
struct chunk {
	struct chunk *prev, *next; /* in s->partial while it has a free slot */
	void *free;		   /* free slots, linked through their first word */
	size_t used;
	size_t fresh; /* slots never handed out yet, at the end of the chunk */
	bool listed;
};

struct slab {
	size_t obj_size;   /* rounded up to 16 */
	size_t chunk_size; /* a power of two */
	size_t per_chunk;
	size_t keep_empty;
	size_t n_empty;
	size_t in_use;
	size_t chunks;
	struct chunk *partial; /* chunks with a free slot, most recent first */
};

static size_t header_size(void)
{
	return (sizeof(struct chunk) + 15) & ~(size_t)15;
}

int slab_new(size_t obj_size, size_t keep_empty, struct slab **out)
{
	struct slab *s;
	size_t chunk = SLAB_MIN_CHUNK;

	if (!out || obj_size == 0 || obj_size > 64 * 1024)
		return -EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->obj_size = (obj_size + 15) & ~(size_t)15;
	while ((chunk - header_size()) / s->obj_size < SLAB_MIN_OBJS)
		chunk *= 2;
	s->chunk_size = chunk;
	s->per_chunk = (chunk - header_size()) / s->obj_size;
	s->keep_empty = keep_empty;
	*out = s;
	return 0;
}

static void list_add(struct slab *s, struct chunk *c)
{
	assert(!c->listed);
	c->prev = NULL;
	c->next = s->partial;
	if (s->partial)
		s->partial->prev = c;
	s->partial = c;
	c->listed = true;
}

static void list_del(struct slab *s, struct chunk *c)
{
	assert(c->listed);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->partial = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->listed = false;
}

static struct chunk *chunk_new(struct slab *s)
{
	size_t size = s->chunk_size;
	uint8_t *raw =
	    mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uintptr_t start;
	struct chunk *c;

	if (raw == MAP_FAILED)
		return NULL;
	/* Keep the aligned middle, give back both ends. */
	start = ((uintptr_t)raw + size - 1) & ~(uintptr_t)(size - 1);
	if (start > (uintptr_t)raw)
		munmap(raw, start - (uintptr_t)raw);
	if ((uintptr_t)raw + 2 * size > start + size)
		munmap((void *)(start + size), (uintptr_t)raw + 2 * size - (start + size));
	c = (struct chunk *)start;
	c->fresh = s->per_chunk; /* the mapping is zeroed: nothing else to set */
	s->chunks++;
	s->n_empty++;
	return c;
}

void *slab_alloc(struct slab *s)
{
	struct chunk *c = s->partial;
	void *p;

	if (!c) {
		c = chunk_new(s);
		if (!c)
			return NULL;
		list_add(s, c);
	}
	if (c->used == 0)
		s->n_empty--;
	if (c->free) {
		p = c->free;
		c->free = *(void **)p;
		memset(p, 0, s->obj_size);
	} else {
		/* Slots never used are still zero from the mapping. */
		p = (uint8_t *)c + header_size() + (s->per_chunk - c->fresh) * s->obj_size;
		c->fresh--;
	}
	c->used++;
	s->in_use++;
	if (!c->free && !c->fresh)
		list_del(s, c);
	return p;
}

void slab_free(struct slab *s, void *p)
{
	struct chunk *c;

	if (!p)
		return;
	c = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(s->chunk_size - 1));
	assert(c->used > 0 && s->in_use > 0);
	*(void **)p = c->free;
	c->free = p;
	c->used--;
	s->in_use--;
	if (!c->listed)
		list_add(s, c);
	if (c->used > 0)
		return;
	if (s->n_empty < s->keep_empty) {
		s->n_empty++;
		return;
	}
	list_del(s, c);
	s->chunks--;
	munmap(c, s->chunk_size);
}

void slab_destroy(struct slab *s)
{
	if (!s)
		return;
	assert(s->in_use == 0); /* so every chunk is on the list */
	while (s->partial) {
		struct chunk *c = s->partial;
		list_del(s, c);
		munmap(c, s->chunk_size);
	}
	free(s);
}

size_t slab_in_use(const struct slab *s)
{
	return s->in_use;
}

size_t slab_chunks(const struct slab *s)
{
	return s->chunks;
}
