/* clients: connection counts per client address for
 * max_connections_per_client, in an open-addressing table over the client's
 * IP bytes. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

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

/* The client's IP as 16 bytes (IPv4 v4-mapped), and its hash. */
static size_t client_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		key[10] = key[11] = 0xff;
	} else {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
	return slot_hash(key);
}

/* Rebuild the table for the live entries only: tombstones go, and the size
 * follows the clients connected now (so it shrinks again after a burst of
 * distinct addresses, e.g. IPv6 privacy addresses). */
static int clients_rehash(struct proxy *px)
{
	size_t live = 0, cap = 256;
	struct client_slot *t;

	for (size_t i = 0; i < px->clients_cap; i++)
		live += px->clients[i].count ? 1 : 0;
	while (cap < (live + 1) * 4)
		cap *= 2;
	t = calloc(cap, sizeof *t);
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < px->clients_cap; i++) {
		struct client_slot *o = &px->clients[i];
		if (!o->count)
			continue;
		size_t j = slot_hash(o->addr) & (cap - 1);
		while (t[j].count)
			j = (j + 1) & (cap - 1);
		t[j] = *o;
	}
	free(px->clients);
	px->clients = t;
	px->clients_cap = cap;
	px->clients_used = live;
	return 0;
}

int proxy_client_add(struct proxy *px, const struct sockaddr *addr)
{
	uint32_t limit = px->gen->conf->server.max_connections_per_client;
	uint8_t key[16];
	size_t h, i, free_at = SIZE_MAX;

	/* clients_used counts live entries and tombstones: both lengthen probes. */
	if ((px->clients_used + 1) * 2 > px->clients_cap && clients_rehash(px) < 0)
		return -ENOMEM;
	h = client_key(addr, key);
	for (i = h & (px->clients_cap - 1);; i = (i + 1) & (px->clients_cap - 1)) {
		struct client_slot *s = &px->clients[i];
		if (s->count && memcmp(s->addr, key, 16) == 0) {
			if (limit && s->count >= limit)
				return -EBUSY;
			s->count++;
			return 0;
		}
		if (!s->count && free_at == SIZE_MAX)
			free_at = i;
		if (!s->count && !s->tomb)
			break;
	}
	memcpy(px->clients[free_at].addr, key, 16);
	px->clients[free_at].count = 1;
	if (!px->clients[free_at].tomb)
		px->clients_used++;
	px->clients[free_at].tomb = false;
	return 0;
}

void proxy_client_remove(struct proxy *px, const struct sockaddr *addr)
{
	uint8_t key[16];
	size_t h, i;

	if (!px->clients_cap)
		return;
	h = client_key(addr, key);
	for (i = h & (px->clients_cap - 1);; i = (i + 1) & (px->clients_cap - 1)) {
		struct client_slot *s = &px->clients[i];
		if (s->count && memcmp(s->addr, key, 16) == 0) {
			if (--s->count == 0)
				s->tomb = true;
			return;
		}
		if (!s->count && !s->tomb)
			return;
	}
}
