/* guard: the proxy's side of the destination policy (dstpolicy.h).
 *
 * Internal to proxy/. Knows which ports are ours (every listener as bound,
 * paused ones included, and the admin endpoint) and asks dstpolicy_check()
 * with the bind test as the "is this address local" question.
 */
#ifndef SOCKPOOL_GUARD_H
#define SOCKPOOL_GUARD_H

#include <sys/socket.h>

#include "dstpolicy.h"
#include "proxy.h"

/* The verdict for `client` connecting to `dest` under `conf`'s
 * allow_destinations and deny_destinations. Loop thread only; cheap unless
 * `dest` is on one of our ports (then one bind test). */
enum dstpolicy_verdict guard_destination(const struct proxy *px, const struct conf *conf,
					 const struct sockaddr *client,
					 const struct sockaddr *dest);

#endif
