/* dstpolicy: the built-in destination policy, see dstpolicy.h. */
#include "dstpolicy.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

int dstpolicy_normalise(const struct sockaddr *in, struct sockaddr_storage *out)
{
	if (!in || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (in->sa_family == AF_INET) {
		memcpy(out, in, sizeof(struct sockaddr_in));
		return 0;
	}
	if (in->sa_family != AF_INET6)
		return -EINVAL;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)in;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)out;
		s4->sin_family = AF_INET;
		s4->sin_port = s6->sin6_port;
		memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
		return 0;
	}
	memcpy(out, in, sizeof(struct sockaddr_in6));
	return 0;
}

static uint32_t v4(const struct sockaddr *a)
{
	return ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr);
}

static const struct in6_addr *v6(const struct sockaddr *a)
{
	return &((const struct sockaddr_in6 *)a)->sin6_addr;
}

bool dstpolicy_is_loopback(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
		return v4(addr) >> 24 == 127;
	return addr->sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(v6(addr));
}

bool dstpolicy_is_unspecified(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
		return v4(addr) >> 24 == 0;
	return addr->sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(v6(addr));
}

bool dstpolicy_is_link_local(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
		return v4(addr) >> 16 == (169u << 8 | 254u);
	return addr->sa_family == AF_INET6 && IN6_IS_ADDR_LINKLOCAL(v6(addr));
}

static uint16_t port_of(const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)addr)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
}

static bool own_port(const struct dstpolicy *p, uint16_t port)
{
	for (size_t i = 0; i < p->n_own_ports; i++)
		if (p->own_ports[i] == port)
			return true;
	return false;
}

static bool list_match(const struct conf_cidr_list *list, const struct sockaddr *addr)
{
	return list && list->count && conf_cidr_list_match(list, addr);
}

enum dstpolicy_verdict dstpolicy_check(const struct dstpolicy *p, const struct sockaddr *client,
				       const struct sockaddr *dest)
{
	struct sockaddr_storage d, c;
	const struct sockaddr *da = (const struct sockaddr *)&d;
	bool client_loopback;

	if (!p || dstpolicy_normalise(dest, &d) < 0)
		return DSTPOLICY_DENY_LIST;
	client_loopback = dstpolicy_normalise(client, &c) == 0 &&
			  dstpolicy_is_loopback((const struct sockaddr *)&c);

	/* Loopback and "this host" always reach our own sockets; any other
	 * address only when the host has it. */
	if (own_port(p, port_of(da)) &&
	    (dstpolicy_is_loopback(da) || dstpolicy_is_unspecified(da) ||
	     (p->is_local && p->is_local(da, p->ctx))))
		return DSTPOLICY_DENY_SELF;
	if (list_match(p->allow, da))
		return DSTPOLICY_ALLOW;
	if (!client_loopback && (dstpolicy_is_loopback(da) || dstpolicy_is_unspecified(da) ||
				 dstpolicy_is_link_local(da)))
		return DSTPOLICY_DENY_LOCAL;
	if (list_match(p->deny, da))
		return DSTPOLICY_DENY_LIST;
	return DSTPOLICY_ALLOW;
}

const char *dstpolicy_verdict_str(enum dstpolicy_verdict v)
{
	switch (v) {
	case DSTPOLICY_ALLOW:
		return "allowed";
	case DSTPOLICY_DENY_SELF:
		return "own listener or admin port";
	case DSTPOLICY_DENY_LOCAL:
		return "local address for a non-loopback client";
	case DSTPOLICY_DENY_LIST:
		return "deny_destinations";
	}
	return "denied";
}

bool dstpolicy_bind_test(const struct sockaddr *addr, void *ctx)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, rc;

	(void)ctx;
	if (dstpolicy_normalise(addr, &ss) < 0)
		return true;
	if (ss.ss_family == AF_INET) {
		((struct sockaddr_in *)&ss)->sin_port = 0;
		len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
		len = sizeof(struct sockaddr_in6);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return true;
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	rc = bind(fd, (const struct sockaddr *)&ss, len) == 0 ? 0 : errno;
	close(fd);
	return rc != EADDRNOTAVAIL;
}
