/* authq: who gets the next password check, and how long a failure waits.
 *
 * Checking a crypt(3) hash takes tens of milliseconds on purpose, and only a
 * few checks run at once (they share libuv's threadpool with DNS). One client
 * address sending hundreds of wrong passwords must not push everybody else's
 * login past handshake_timeout, so:
 *
 * - the queue caps pending checks (waiting + running) per client and in all;
 *   a login over its client's cap is parked: it takes no slot and runs no
 *   crypt until a login of the same client succeeds (then it may pass from
 *   the cache, or queue again); over the queue's cap it is refused;
 * - a free slot goes to the clients round-robin, not first come first served:
 *   a client with one login waiting is served after at most one check of
 *   each other waiting client;
 * - the throttle makes repeated failures from one client wait before their
 *   reply (0 ms for the first, then growing, capped), forgotten after a quiet
 *   minute.
 *
 * A client is its IPv4 address, or the /64 of its IPv6 address (one host's
 * privacy addresses are one client).
 *
 * Pure: no I/O, no clock (time is an argument), no threads; both objects
 * belong to one loop thread. Memory is allocated once, in _new.
 */
#ifndef SOCKPOOL_AUTHQ_H
#define SOCKPOOL_AUTHQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct authq;
struct authq_client;

/* Embedded in the caller's per-login state; zero it before the first submit.
 * The fields are the queue's; `state` may be read. */
struct authq_entry {
	struct authq_entry *prev, *next;
	struct authq_client *client;
	uint8_t key[16]; /* parked: the client */
	enum { AUTHQ_IDLE, AUTHQ_WAITING, AUTHQ_RUNNING, AUTHQ_PARKED } state;
};

struct authq_limits {
	unsigned running;    /* checks at once, >= 1 */
	unsigned per_client; /* pending per client, >= 1 */
	unsigned total;	     /* pending in all, >= running and >= per_client */
};

/* Defaults for the proxy: 2 checks at once (the threadpool also runs DNS
 * lookups, which logins must not starve), 32 pending per client (room for a
 * burst of one MTA's connections, whose waiting logins then pass from the
 * cache the first check fills), 1024 in all. */
#define AUTHQ_RUNNING	 2u
#define AUTHQ_PER_CLIENT 32u
#define AUTHQ_TOTAL	 1024u

/* @return 0 and *out (free with authq_free), -EINVAL for limits out of range,
 *         -ENOMEM. */
int authq_new(const struct authq_limits *lim, struct authq **out);

/* Free the queue. Entries still in it are left as they are (the caller is
 * tearing everything down). NULL is allowed. */
void authq_free(struct authq *q);

/* Ask for a check for `e` (state AUTHQ_IDLE) from `client` (AF_INET or
 * AF_INET6, v4-mapped counts as IPv4).
 * @return 1: a slot is free, `e` is RUNNING: start the check now and call
 *            authq_done() when it ends;
 *         0: `e` is WAITING; a later authq_done() hands it out;
 *         -EBUSY: the client is at its cap, `e` stays IDLE (park it);
 *         -ENOSPC: the queue is at its cap, `e` stays IDLE (refuse it);
 *         -EINVAL: bad arguments or `e` not IDLE. */
int authq_submit(struct authq *q, struct authq_entry *e, const struct sockaddr *client);

/* The check of RUNNING `e` ended (or could not be started); `e` is IDLE
 * again. @return the entry to start next, already RUNNING (the caller must
 * start it, and call authq_done() for it too if that fails), or NULL. */
struct authq_entry *authq_done(struct authq *q, struct authq_entry *e);

/* Take WAITING or PARKED `e` out of the queue (its client went away); `e`
 * is IDLE. A RUNNING check cannot be cancelled: call authq_done() when it
 * returns. IDLE is a no-op. */
void authq_cancel(struct authq *q, struct authq_entry *e);

/* Set IDLE `e` of `client` aside after authq_submit() said -EBUSY; it is
 * PARKED, in no cap, until authq_unpark() or authq_cancel().
 * @return 0, or -EINVAL. */
int authq_park(struct authq *q, struct authq_entry *e, const struct sockaddr *client);

/* A login of `client` succeeded: @return its oldest parked entry, IDLE again
 * (check the cache, else authq_submit() it), or NULL when none is left.
 * Costs a walk of the parked entries. */
struct authq_entry *authq_unpark(struct authq *q, const struct sockaddr *client);

/* Checks running now, entries waiting now, entries parked now. */
unsigned authq_running(const struct authq *q);
unsigned authq_waiting(const struct authq *q);
unsigned authq_parked(const struct authq *q);

struct authq_throttle;

/* Delay before the reply of the n-th failure within the window: 0 for the
 * first, AUTHQ_DELAY_BASE_MS for the second, doubling, at most
 * AUTHQ_DELAY_MAX_MS. A client quiet for AUTHQ_FAIL_WINDOW_MS starts over. */
#define AUTHQ_DELAY_BASE_MS  100u
#define AUTHQ_DELAY_MAX_MS   2000u
#define AUTHQ_FAIL_WINDOW_MS 60000u

/* A table of `slots` clients (rounded up to a power of two, >= 16); a new
 * client may take the place of another in its slot, which forgets that one.
 * `seed` keys the slot hash (draw it at random, so that nobody can aim at a
 * slot). @return 0 and *out (free with authq_throttle_free), -EINVAL, -ENOMEM. */
int authq_throttle_new(size_t slots, uint64_t seed, struct authq_throttle **out);
void authq_throttle_free(struct authq_throttle *t);

/* A failed login from `client` at `now_ms`.
 * @return the delay in ms before its failure reply. */
uint64_t authq_throttle_fail(struct authq_throttle *t, const struct sockaddr *client,
			     uint64_t now_ms);

/* A successful login from `client`: its failures are forgotten. */
void authq_throttle_ok(struct authq_throttle *t, const struct sockaddr *client);

/* The client key (see above) of an address, 16 bytes; exposed for tests.
 * @return 0, or -EINVAL for a non-IP address. */
int authq__key(const struct sockaddr *addr, uint8_t key[16]);

#endif
