/* classify: the failure table of SPEC 4.2 as one pure function.
 *
 * Internal to proxy/. An outbound attempt that fails hands the phase it
 * failed in and the error to classify_failure(); the verdict says what the
 * pool is told about the source and what the attempt does next. No I/O, no
 * state: the caller gathers every input (including whether the source
 * address is still on the host) before asking.
 */
#ifndef SOCKPOOL_CLASSIFY_H
#define SOCKPOOL_CLASSIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Where an attempt failed. */
enum classify_phase {
	CLASSIFY_BIND,		     /* socket options and bind(src:0) */
	CLASSIFY_CONNECT,	     /* connect(dest) straight to the destination */
	CLASSIFY_UPSTREAM_HANDSHAKE, /* connecting to or negotiating with the source's proxy,
				      * or its timeout */
	CLASSIFY_UPSTREAM_BIND,	     /* the source's proxy refused our BIND */
	CLASSIFY_UPSTREAM_CONNECT,   /* the source's proxy could not CONNECT the destination */
};

/* What the pool is told about the source. */
enum classify_blame {
	CLASSIFY_BLAME_NONE,	  /* nothing: not the source's fault */
	CLASSIFY_BLAME_UNPLUMBED, /* POOL_FAILURE_UNPLUMBED */
	CLASSIFY_BLAME_PORTS,	  /* POOL_FAILURE_PORTS_EXHAUSTED (counted, never suspends) */
	CLASSIFY_BLAME_PROXY,	  /* POOL_FAILURE_PROXY_UNHEALTHY */
};

/* What the attempt does next. */
enum classify_next {
	CLASSIFY_NEXT_SOURCE, /* same destination address, another source */
	CLASSIFY_NEXT_DEST,   /* the next resolved destination address; `rep` if none is left */
	CLASSIFY_REPLY,	      /* answer the client with `rep` now */
};

struct classify_input {
	enum classify_phase phase;
	int err;	  /* negative libuv error (UV_E*), 0 when there is none */
	uint8_t rep;	  /* UPSTREAM_CONNECT: the upstream proxy's REP code */
	bool source_gone; /* CONNECT: the source address is no longer on the host */
	bool pinned;	  /* the client chose the source (BIND, source=same): no failover */
};

struct classify_verdict {
	enum classify_blame blame;
	enum classify_next next;
	uint8_t rep; /* SOCKS5_REP_*: for REPLY, and for NEXT_DEST when no address is left */
};

/* Sort one failure into the SPEC 4.2 table. Unknown errors are the
 * destination's in CONNECT (reply 0x01 when no address is left) and local in
 * BIND (next destination address, 0x01): neither suspends a source. A pinned
 * source is never swapped: where an unpinned one would go to the next source,
 * a pinned one replies 0x01, except for busy ports, which are no fault of the
 * source and move on to the next destination address. */
struct classify_verdict classify_failure(const struct classify_input *in);

/* Whether a connect error is one with which a vanished source address shows
 * (ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EINVAL): only then is it worth
 * checking the host for the address to fill in `source_gone`. */
bool classify_may_be_vanished(int uv_err);

/* SOCKS5 REP code for a connect error to the destination (SPEC 4.2):
 * refused 0x05, network unreachable 0x03, host unreachable 0x04, timeout
 * 0x06, EACCES/EPERM 0x02, anything else 0x01. */
uint8_t classify_rep_for(int uv_err);

#endif
