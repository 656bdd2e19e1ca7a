/* egress: from a chosen source to a bound outbound socket.
 *
 * Internal to proxy/. The socket work that pool/ must not know about:
 * IP_BIND_ADDRESS_NO_PORT, FREEBIND for prefix sources, bind(), the address
 * a prefix source egresses from, and the probes that tell whether a source
 * address is on the host and whether a prefix is routed to it. What a failure
 * means is classify.h's business; the generation (conf, pools, lookups) is
 * gen.h's.
 */
#ifndef SOCKPOOL_EGRESS_H
#define SOCKPOOL_EGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"

/* Prepare `h` (initialised with uv_tcp_init_ex for dest's family) to leave
 * from `cs`: socket options, then bind. `adhoc` (may be NULL) is an address
 * to bind instead of a configured source (bind_unlisted = allow). `key`
 * (keylen bytes, may be NULL) picks the address of a prefix source when
 * prefix_pick = hash: the same key always gives the same address.
 * @return 0, or a negative libuv error: from setsockopt or bind
 *         (UV_EADDRNOTAVAIL from bind means the source is unplumbed),
 *         UV_EAFNOSUPPORT when the source's family is not dest's. */
int egress_bind(uv_tcp_t *h, const struct conf_source *cs, const struct sockaddr *adhoc,
		const struct sockaddr *dest, const void *key, size_t keylen);

/* Check that `addr` can be bound now, on a fresh socket with port 0 (SOCKS
 * BIND is answered before the CONNECT it prepares; a failed connect asks
 * whether its source vanished). Does not block.
 * @return 0 or -errno (-EADDRNOTAVAIL: the address is not on the host). */
int egress_probe_bind(const struct sockaddr *addr);

/* Prove that the host routes a prefix source's network to itself by
 * connecting between two of its addresses. BLOCKS for up to ~1 s: run it in
 * the threadpool, never on the loop. Reads only *cs.
 * @return 0 or -errno. */
int egress_probe_prefix(const struct conf_source *cs);

/* Whether the source could serve a destination of this family. */
bool egress_source_fits(const struct conf_source *cs, int family);

#endif
