/* clients: open connections per client address, for
 * max_connections_per_client, counted across every worker.
 *
 * Internal to proxy/. An open-addressing table keyed by the client's IP
 * (IPv4 as v4-mapped IPv6, so both spellings of one client count together),
 * with its own lock when several threads use it. It keeps only addresses
 * with a connection open: it shrinks again after a burst of distinct
 * addresses (IPv6 privacy addresses).
 */
#ifndef SOCKPOOL_CLIENTS_H
#define SOCKPOOL_CLIENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct client_slot;

struct clients {
	pthread_mutex_t mu;
	bool threaded; /* false: one thread uses it, no lock is taken */
	struct client_slot *slots;
	size_t cap;  /* 0 or a power of two */
	size_t used; /* live entries plus tombstones */
};

/* @return 0 or -errno (pthread_mutex_init). */
int clients_init(struct clients *t, bool threaded);
/* Free the table. */
void clients_destroy(struct clients *t);

/* Count one more connection of `addr` (AF_INET or AF_INET6; the port is
 * ignored), unless it has `limit` already (0 = no limit).
 * @return 0, -EBUSY (at the limit), -ENOMEM, -EINVAL (other families). */
int clients_add(struct clients *t, const struct sockaddr *addr, uint32_t limit);

/* One connection of `addr` ended; it must have been added. */
void clients_remove(struct clients *t, const struct sockaddr *addr);

/* Connections counted for `addr` now. */
uint32_t clients_count(struct clients *t, const struct sockaddr *addr);

#endif
