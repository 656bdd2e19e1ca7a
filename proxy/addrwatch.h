/* addrwatch: end unplumbed suspensions early when an address is plumbed
 * again (`resume_when_plumbed = yes`). Internal to proxy/. */
#ifndef SOCKPOOL_ADDRWATCH_H
#define SOCKPOOL_ADDRWATCH_H

#include "proxy.h"

struct addrwatch;

/* Watch the kernel's address events on px->loop. Sources are looked up in
 * px->gen at each event, so a reload needs no restart.
 * @return 0 or -errno (no netlink here, e.g. a restricted container). */
int addrwatch_start(struct proxy *px, struct addrwatch **out);

/* Stop watching; the watch is freed in its close callback. NULL is a no-op. */
void addrwatch_stop(struct addrwatch *w);

#endif
