/* clients: per-client-address connection counts, see clients.h, and the
 * proxy's use of them (proxy.h). */
#include "clients.h"
#include "proxy.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct client_slot {
	uint8_t addr[16];
	uint32_t count; /* 0 = free */
	bool tomb;	/* was used: keep probing past it */
};

static size_t slot_hash(const uint8_t key[16])
{
	uint64_t h = 1469598103934665603ull;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 1099511628211ull;
	return (size_t)h;
}

/* The client's IP as 16 bytes (IPv4 v4-mapped). */
static bool client_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		key[10] = key[11] = 0xff;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

static void lock(struct clients *t)
{
	if (t->threaded)
		pthread_mutex_lock(&t->mu);
}

static void unlock(struct clients *t)
{
	if (t->threaded)
		pthread_mutex_unlock(&t->mu);
}

int clients_init(struct clients *t, bool threaded)
{
	int rc;

	*t = (struct clients){.threaded = threaded};
	rc = pthread_mutex_init(&t->mu, NULL);
	return rc ? -rc : 0;
}

void clients_destroy(struct clients *t)
{
	free(t->slots);
	t->slots = NULL;
	t->cap = t->used = 0;
	pthread_mutex_destroy(&t->mu);
}

/* Rebuild the table for the live entries only: tombstones go, and the size
 * follows the clients connected now. */
static int rehash(struct clients *t)
{
	size_t live = 0, cap = 256;
	struct client_slot *n;

	for (size_t i = 0; i < t->cap; i++)
		live += t->slots[i].count ? 1 : 0;
	while (cap < (live + 1) * 4)
		cap *= 2;
	n = calloc(cap, sizeof *n);
	if (!n)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		struct client_slot *o = &t->slots[i];
		if (!o->count)
			continue;
		size_t j = slot_hash(o->addr) & (cap - 1);
		while (n[j].count)
			j = (j + 1) & (cap - 1);
		n[j] = *o;
		n[j].tomb = false;
	}
	free(t->slots);
	t->slots = n;
	t->cap = cap;
	t->used = live;
	return 0;
}

/* The slot holding `key`, or NULL; *free_at gets the first reusable slot on
 * the probe path (SIZE_MAX if none before the end of the chain). */
static struct client_slot *find(struct clients *t, const uint8_t key[16], size_t *free_at)
{
	size_t mask = t->cap - 1;

	*free_at = SIZE_MAX;
	if (!t->cap)
		return NULL;
	for (size_t i = slot_hash(key) & mask;; i = (i + 1) & mask) {
		struct client_slot *s = &t->slots[i];
		if (s->count && memcmp(s->addr, key, 16) == 0)
			return s;
		if (!s->count && *free_at == SIZE_MAX)
			*free_at = i;
		if (!s->count && !s->tomb)
			return NULL;
	}
}

int clients_add(struct clients *t, const struct sockaddr *addr, uint32_t limit)
{
	struct client_slot *s;
	uint8_t key[16];
	size_t free_at;
	int rc = 0;

	if (!addr || !client_key(addr, key))
		return -EINVAL;
	lock(t);
	/* `used` counts live entries and tombstones: both lengthen probes. */
	if ((t->used + 1) * 2 > t->cap && (rc = rehash(t)) < 0)
		goto out;
	s = find(t, key, &free_at);
	if (s) {
		if (limit && s->count >= limit)
			rc = -EBUSY;
		else
			s->count++;
		goto out;
	}
	s = &t->slots[free_at];
	memcpy(s->addr, key, 16);
	s->count = 1;
	if (!s->tomb)
		t->used++;
	s->tomb = false;
out:
	unlock(t);
	return rc;
}

void clients_remove(struct clients *t, const struct sockaddr *addr)
{
	struct client_slot *s;
	uint8_t key[16];
	size_t free_at;

	if (!addr || !client_key(addr, key))
		return;
	lock(t);
	s = find(t, key, &free_at);
	if (s && --s->count == 0)
		s->tomb = true;
	unlock(t);
}

uint32_t clients_count(struct clients *t, const struct sockaddr *addr)
{
	struct client_slot *s;
	uint8_t key[16];
	size_t free_at;
	uint32_t n = 0;

	if (!addr || !client_key(addr, key))
		return 0;
	lock(t);
	s = find(t, key, &free_at);
	if (s)
		n = s->count;
	unlock(t);
	return n;
}

int proxy_client_add(struct proxy *px, const struct sockaddr *addr)
{
	return clients_add(&px->main->clients, addr,
			   px->gen->conf->server.max_connections_per_client);
}

void proxy_client_remove(struct proxy *px, const struct sockaddr *addr)
{
	clients_remove(&px->main->clients, addr);
}
