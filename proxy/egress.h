/* egress: from configuration to pools, and from a chosen source to a bound
 * outbound socket.
 *
 * Internal to proxy/. Wraps the pure pool engine for the proxy: builds a
 * generation's pool set from `struct conf`, logs pool events, and does the
 * socket work (IP_BIND_ADDRESS_NO_PORT, FREEBIND for prefixes, bind) that
 * pool/ must not know about.
 */
#ifndef SOCKPOOL_EGRESS_H
#define SOCKPOOL_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "pool.h"
#include "proxy.h"

/* What kind of failure an attempt hit, as the failure table of SPEC 4.2
 * sorts them. */
enum egress_blame {
	EGRESS_BLAME_NONE,
	EGRESS_BLAME_UNPLUMBED,	/* bind EADDRNOTAVAIL */
	EGRESS_BLAME_PORTS,	/* connect EADDRNOTAVAIL/EADDRINUSE */
	EGRESS_BLAME_PROXY,	/* upstream proxy unhealthy */
	EGRESS_BLAME_DEST,	/* refused, unreachable, timeout */
	EGRESS_BLAME_LOCAL,	/* anything else (EMFILE, ENOMEM...) */
};

/* The conf source behind a pool source. */
const struct conf_source *egress_conf_source(const struct proxy_gen *gen,
					     const struct pool_source *src);

/* The pool source of a conf source index, or NULL. */
struct pool_source *egress_pool_source(const struct proxy_gen *gen, size_t conf_index);

/* The pool of conf pool index `i`. */
struct pool *egress_pool(const struct proxy_gen *gen, size_t i);

/* Index of the configured source whose address is `addr` (port ignored;
 * v4-mapped compares as IPv4), or -ENOENT. */
int egress_find_source(const struct conf *conf, const struct sockaddr *addr);

/* Whether conf pool `pool` lists source `src` with a weight above 0. */
bool egress_pool_has(const struct conf *conf, size_t pool, size_t src);

/* Prepare `h` (initialised with uv_tcp_init_ex for dest's family) to leave
 * from `cs`: socket options, then bind. `adhoc` (may be NULL) is an address
 * to bind instead of a configured source (bind_unlisted = allow). `key` picks
 * the address of a prefix source when prefix_pick = hash.
 * @return 0, or a negative libuv error from bind (UV_EADDRNOTAVAIL means the
 *         source is unplumbed). */
int egress_bind(uv_tcp_t *h, const struct conf_source *cs, const struct sockaddr *adhoc,
		const struct sockaddr *dest, const void *key, size_t keylen);

/* Check that `addr` can be bound now (SOCKS BIND is answered before the
 * CONNECT it prepares). @return 0 or -errno (-EADDRNOTAVAIL: unplumbed). */
int egress_probe_bind(const struct sockaddr *addr);

/* Prove that the host routes a prefix source's network to itself by
 * connecting between two of its addresses. Blocks for at most ~1 s.
 * @return 0 or -errno. */
int egress_probe_prefix(const struct conf_source *cs);

/* Sort a connect error into the failure table. */
enum egress_blame egress_blame_connect(int uv_err);

/* REP code for a destination error (SPEC 4.2). */
uint8_t egress_rep_for(int uv_err);

/* Whether the source could serve a destination of this family. */
bool egress_source_fits(const struct conf_source *cs, int family);

#endif
