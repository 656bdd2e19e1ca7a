/* dstpolicy: may this client reach this destination address (SPEC 4.5)?
 *
 * One pure decision, checked on every resolved destination address:
 *
 *   1. normalise: an IPv4-mapped IPv6 address is its IPv4 address; 0.0.0.0/8
 *      and :: mean "this host" (the kernel connects them to a local address);
 *   2. a port of our own listeners or admin endpoint on a local address
 *      (loopback, unspecified, or one the host has) is refused to everyone,
 *      allow_destinations cannot open it: that is the proxy talking to itself;
 *   3. allow_destinations matches: allowed;
 *   4. loopback, unspecified and link-local destinations are refused unless
 *      the client itself is on loopback: a proxy must not give a client reach
 *      it does not already have;
 *   5. deny_destinations matches: refused;
 *   6. allowed.
 *
 * Whether an address "is local" beyond loopback and unspecified is asked of
 * the `is_local` callback, and only for destinations on one of our ports, so
 * the common request costs a few compares. dstpolicy_bind_test() is the
 * callback the proxy uses: a bind(2) to the address with port 0 succeeds
 * exactly when the host has it, so the answer is always current (no address
 * list to refresh on changes), at the cost of a socket per own-port request.
 *
 * No I/O in dstpolicy_check() itself apart from the callback; no allocation;
 * every function may be called from any thread.
 */
#ifndef SOCKPOOL_DSTPOLICY_H
#define SOCKPOOL_DSTPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf.h"

enum dstpolicy_verdict {
	DSTPOLICY_ALLOW = 0,
	DSTPOLICY_DENY_SELF,  /* one of our own listeners or the admin endpoint */
	DSTPOLICY_DENY_LOCAL, /* loopback/unspecified/link-local for a remote client */
	DSTPOLICY_DENY_LIST,  /* deny_destinations */
};

/* @return whether `addr` (normalised, AF_INET or AF_INET6, any port) is an
 * address of this host. */
typedef bool (*dstpolicy_local_cb)(const struct sockaddr *addr, void *ctx);

/* What the decision needs; every pointer is borrowed for the call only. */
struct dstpolicy {
	const struct conf_cidr_list *allow; /* allow_destinations, may be NULL */
	const struct conf_cidr_list *deny;  /* deny_destinations, may be NULL */
	const uint16_t *own_ports;	    /* listener and admin ports, host order */
	size_t n_own_ports;
	dstpolicy_local_cb is_local; /* NULL: only loopback/unspecified are local */
	void *ctx;
};

/* Copy `in` to `out` with an IPv4-mapped IPv6 address turned into AF_INET
 * (port kept). Other addresses are copied as they are.
 * @return 0, or -EINVAL for NULL or a family other than AF_INET/AF_INET6. */
int dstpolicy_normalise(const struct sockaddr *in, struct sockaddr_storage *out);

/* Loopback (127/8, ::1), this host (0/8, ::) and link-local (169.254/16,
 * fe80::/10) tests on a normalised address. */
bool dstpolicy_is_loopback(const struct sockaddr *addr);
bool dstpolicy_is_unspecified(const struct sockaddr *addr);
bool dstpolicy_is_link_local(const struct sockaddr *addr);

/* The verdict for `client` (the peer address of the SOCKS connection)
 * asking for `dest` (a resolved destination with its port). Both may be
 * IPv4-mapped; a NULL or non-IP argument is refused (DSTPOLICY_DENY_LIST for
 * dest, the client counts as remote). */
enum dstpolicy_verdict dstpolicy_check(const struct dstpolicy *p, const struct sockaddr *client,
				       const struct sockaddr *dest);

/* A short word for logs: "allowed", "own listener or admin port",
 * "local address for a non-loopback client", "deny_destinations". */
const char *dstpolicy_verdict_str(enum dstpolicy_verdict v);

/* dstpolicy_local_cb by bind test: binds a throwaway TCP socket to `addr`
 * with port 0 (IP_BIND_ADDRESS_NO_PORT, so no port is taken). Fails closed:
 * any error but EADDRNOTAVAIL says "local". `ctx` is unused. Never blocks. */
bool dstpolicy_bind_test(const struct sockaddr *addr, void *ctx);

#endif
