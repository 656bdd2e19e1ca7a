/* authq: a fair, capped password-check queue and a failure throttle, see
 * authq.h. */
#include "authq.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* A client with something pending. Clients with waiting entries form the
 * round-robin ring (a doubly linked list served from its head). */
struct authq_client {
	uint8_t key[16];
	unsigned pending;		 /* waiting + running; 0 = slot free */
	struct authq_entry *head, *tail; /* waiting entries, oldest first */
	struct authq_client *prev, *next;
	bool in_ring;
};

struct authq {
	struct authq_limits lim;
	unsigned running, waiting, pending, parked;
	struct authq_entry *park_head, *park_tail; /* oldest first */
	struct authq_client *clients;		   /* lim.total slots: no more can be pending */
	struct authq_client *ring_head, *ring_tail;
};

int authq__key(const struct sockaddr *addr, uint8_t key[16])
{
	memset(key, 0, 16);
	if (!addr)
		return -EINVAL;
	if (addr->sa_family == AF_INET) {
		memcpy(key + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		key[10] = key[11] = 0xff;
		return 0;
	}
	if (addr->sa_family != AF_INET6)
		return -EINVAL;
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)addr)->sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(a6)) {
		memcpy(key, a6, 16);
		return 0;
	}
	memcpy(key, a6, 8); /* the /64 */
	return 0;
}

int authq_new(const struct authq_limits *lim, struct authq **out)
{
	struct authq *q;

	if (!lim || !out || lim->running < 1 || lim->per_client < 1 || lim->total < lim->running ||
	    lim->total < lim->per_client)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->clients = calloc(lim->total, sizeof(*q->clients));
	if (!q->clients) {
		free(q);
		return -ENOMEM;
	}
	q->lim = *lim;
	*out = q;
	return 0;
}

void authq_free(struct authq *q)
{
	if (!q)
		return;
	free(q->clients);
	free(q);
}

/* A linear scan: lim.total slots (1024 for the proxy: a few microseconds),
 * once per login that reached the slow path, next to a crypt() of tens of
 * ms. */
static struct authq_client *client_get(struct authq *q, const uint8_t key[16], bool create)
{
	struct authq_client *free_slot = NULL;

	for (unsigned i = 0; i < q->lim.total; i++) {
		struct authq_client *c = &q->clients[i];
		if (c->pending && memcmp(c->key, key, 16) == 0)
			return c;
		if (!c->pending && !free_slot)
			free_slot = c;
	}
	if (!create || !free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	memcpy(free_slot->key, key, 16);
	return free_slot;
}

static void ring_push(struct authq *q, struct authq_client *c)
{
	assert(!c->in_ring);
	c->prev = q->ring_tail;
	c->next = NULL;
	if (q->ring_tail)
		q->ring_tail->next = c;
	else
		q->ring_head = c;
	q->ring_tail = c;
	c->in_ring = true;
}

static void ring_remove(struct authq *q, struct authq_client *c)
{
	assert(c->in_ring);
	if (c->prev)
		c->prev->next = c->next;
	else
		q->ring_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		q->ring_tail = c->prev;
	c->prev = c->next = NULL;
	c->in_ring = false;
}

int authq_submit(struct authq *q, struct authq_entry *e, const struct sockaddr *client)
{
	struct authq_client *c;
	uint8_t key[16];

	if (!q || !e || e->state != AUTHQ_IDLE || authq__key(client, key) < 0)
		return -EINVAL;
	if (q->pending >= q->lim.total)
		return -ENOSPC;
	c = client_get(q, key, true);
	assert(c); /* pending < total, so a slot is free */
	if (c->pending >= q->lim.per_client)
		return -EBUSY;
	c->pending++;
	q->pending++;
	e->client = c;
	e->next = NULL;
	if (q->running < q->lim.running) {
		q->running++;
		e->state = AUTHQ_RUNNING;
		return 1;
	}
	if (c->tail)
		c->tail->next = e;
	else
		c->head = e;
	c->tail = e;
	if (!c->in_ring)
		ring_push(q, c);
	q->waiting++;
	e->state = AUTHQ_WAITING;
	return 0;
}

static void client_release(struct authq *q, struct authq_client *c)
{
	assert(c->pending > 0 && q->pending > 0);
	c->pending--;
	q->pending--;
}

struct authq_entry *authq_done(struct authq *q, struct authq_entry *e)
{
	struct authq_client *c;
	struct authq_entry *next;

	if (!q || !e || e->state != AUTHQ_RUNNING)
		return NULL;
	client_release(q, e->client);
	e->client = NULL;
	e->state = AUTHQ_IDLE;
	q->running--;
	c = q->ring_head;
	if (!c)
		return NULL;
	/* The first client of the ring gets the slot and goes to the back. */
	next = c->head;
	c->head = next->next;
	if (!c->head)
		c->tail = NULL;
	ring_remove(q, c);
	if (c->head)
		ring_push(q, c);
	next->next = NULL;
	next->state = AUTHQ_RUNNING;
	q->waiting--;
	q->running++;
	return next;
}

static void park_unlink(struct authq *q, struct authq_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		q->park_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		q->park_tail = e->prev;
	e->prev = e->next = NULL;
	e->state = AUTHQ_IDLE;
	q->parked--;
}

int authq_park(struct authq *q, struct authq_entry *e, const struct sockaddr *client)
{
	if (!q || !e || e->state != AUTHQ_IDLE || authq__key(client, e->key) < 0)
		return -EINVAL;
	e->client = NULL;
	e->next = NULL;
	e->prev = q->park_tail;
	if (q->park_tail)
		q->park_tail->next = e;
	else
		q->park_head = e;
	q->park_tail = e;
	e->state = AUTHQ_PARKED;
	q->parked++;
	return 0;
}

struct authq_entry *authq_unpark(struct authq *q, const struct sockaddr *client)
{
	uint8_t key[16];

	if (!q || authq__key(client, key) < 0)
		return NULL;
	for (struct authq_entry *e = q->park_head; e; e = e->next) {
		if (memcmp(e->key, key, 16) == 0) {
			park_unlink(q, e);
			return e;
		}
	}
	return NULL;
}

void authq_cancel(struct authq *q, struct authq_entry *e)
{
	struct authq_client *c;
	struct authq_entry **pp, *prev = NULL;

	if (q && e && e->state == AUTHQ_PARKED) {
		park_unlink(q, e);
		return;
	}
	if (!q || !e || e->state != AUTHQ_WAITING)
		return;
	c = e->client;
	for (pp = &c->head; *pp && *pp != e; pp = &(*pp)->next)
		prev = *pp;
	assert(*pp == e);
	*pp = e->next;
	if (c->tail == e)
		c->tail = prev;
	if (!c->head && c->in_ring)
		ring_remove(q, c);
	client_release(q, c);
	q->waiting--;
	e->next = NULL;
	e->client = NULL;
	e->state = AUTHQ_IDLE;
}

unsigned authq_running(const struct authq *q)
{
	return q ? q->running : 0;
}

unsigned authq_waiting(const struct authq *q)
{
	return q ? q->waiting : 0;
}

unsigned authq_parked(const struct authq *q)
{
	return q ? q->parked : 0;
}

struct throttle_slot {
	uint8_t key[16];
	uint32_t failures; /* 0 = free */
	uint64_t last_ms;
};

struct authq_throttle {
	struct throttle_slot *slots;
	size_t mask;
	uint64_t seed;
};

int authq_throttle_new(size_t slots, uint64_t seed, struct authq_throttle **out)
{
	struct authq_throttle *t;
	size_t n = 16;

	if (!out || slots == 0 || slots > ((size_t)1 << 24))
		return -EINVAL;
	while (n < slots)
		n *= 2;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->slots = calloc(n, sizeof(*t->slots));
	if (!t->slots) {
		free(t);
		return -ENOMEM;
	}
	t->mask = n - 1;
	t->seed = seed;
	*out = t;
	return 0;
}

void authq_throttle_free(struct authq_throttle *t)
{
	if (!t)
		return;
	free(t->slots);
	free(t);
}

/* FNV-1a over the seed and the key, then a final mix. */
static struct throttle_slot *slot_of(struct authq_throttle *t, const uint8_t key[16])
{
	uint64_t h = 1469598103934665603ull ^ t->seed;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return &t->slots[h & t->mask];
}

uint64_t authq_throttle_fail(struct authq_throttle *t, const struct sockaddr *client,
			     uint64_t now_ms)
{
	struct throttle_slot *s;
	uint8_t key[16];
	uint64_t delay;

	if (!t || authq__key(client, key) < 0)
		return 0;
	s = slot_of(t, key);
	if (!s->failures || memcmp(s->key, key, 16) != 0 ||
	    now_ms - s->last_ms >= AUTHQ_FAIL_WINDOW_MS || now_ms < s->last_ms) {
		memcpy(s->key, key, 16);
		s->failures = 0;
	}
	if (s->failures < UINT32_MAX)
		s->failures++;
	s->last_ms = now_ms;
	if (s->failures == 1)
		return 0;
	delay = AUTHQ_DELAY_BASE_MS;
	for (uint32_t i = 2; i < s->failures && delay < AUTHQ_DELAY_MAX_MS; i++)
		delay *= 2;
	return delay < AUTHQ_DELAY_MAX_MS ? delay : AUTHQ_DELAY_MAX_MS;
}

void authq_throttle_ok(struct authq_throttle *t, const struct sockaddr *client)
{
	struct throttle_slot *s;
	uint8_t key[16];

	if (!t || authq__key(client, key) < 0)
		return;
	s = slot_of(t, key);
	if (s->failures && memcmp(s->key, key, 16) == 0)
		memset(s, 0, sizeof(*s));
}
