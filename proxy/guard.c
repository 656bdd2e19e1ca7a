/* guard: the destination policy with the proxy's own ports, see guard.h. */
#include "guard.h"

#include <netinet/in.h>
#include <stdlib.h>

#include "admin.h"

/* Listeners and admin; more than this many listeners is not a real setup,
 * but they are still all checked (the rest on the heap). */
#define GUARD_PORTS_STACK 32

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

enum dstpolicy_verdict guard_destination(const struct proxy *px, const struct conf *conf,
					 const struct sockaddr *client, const struct sockaddr *dest)
{
	uint16_t stack[GUARD_PORTS_STACK], *ports = stack;
	enum dstpolicy_verdict v;
	size_t n = 0;

	if (px->n_listeners + 1 > GUARD_PORTS_STACK) {
		ports = malloc((px->n_listeners + 1) * sizeof(*ports));
		if (!ports)
			return DSTPOLICY_DENY_SELF; /* fail closed */
	}
	for (size_t i = 0; i < px->n_listeners; i++) {
		uint16_t p = port_of(&px->listeners[i].la->bound);
		if (p)
			ports[n++] = p;
	}
	/* Set before any worker started, never changed: no lock. */
	if (px->main->has_admin_bound && port_of(&px->main->admin_bound))
		ports[n++] = port_of(&px->main->admin_bound);

	struct dstpolicy pol = {
	    .allow = &conf->server.allow_destinations,
	    .deny = &conf->server.deny_destinations,
	    .own_ports = ports,
	    .n_own_ports = n,
	    .is_local = dstpolicy_bind_test,
	};
	v = dstpolicy_check(&pol, client, dest);
	if (ports != stack)
		free(ports);
	return v;
}
