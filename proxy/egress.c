/* egress: binding an outbound socket to its source, and the probes that
 * check a source address or prefix on the host. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_FREEBIND
#define IP_FREEBIND 15
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

bool egress_source_fits(const struct conf_source *cs, int family)
{
	switch (cs->kind) {
	case CONF_SOURCE_ADDRESS:
		return cs->addr.ss_family == family;
	case CONF_SOURCE_PREFIX:
		return cs->prefix.family == family;
	default:
		return true;
	}
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* An address inside a prefix source: stable per key, or random. */
static void prefix_address(const struct conf_source *cs, const void *key, size_t keylen,
			   struct sockaddr_storage *out)
{
	const struct conf_cidr *p = &cs->prefix;
	size_t nbytes = p->family == AF_INET ? 4 : 16;
	uint8_t addr[16], fill[16];
	uint64_t h;

	memcpy(addr, p->addr, nbytes);
	if (cs->prefix_pick == CONF_PREFIX_PICK_RANDOM || !key) {
		if (getrandom(fill, sizeof fill, 0) != (ssize_t)sizeof fill)
			memset(fill, 0x5a, sizeof fill);
	} else {
		h = fnv1a(key, keylen);
		for (size_t i = 0; i < 16; i++) {
			if (i == 8)
				h = fnv1a(&h, sizeof h);
			fill[i] = (uint8_t)(h >> (8 * (i % 8)));
		}
	}
	for (size_t bit = p->prefix_len; bit < nbytes * 8; bit++) {
		uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
		addr[bit / 8] = (uint8_t)((addr[bit / 8] & ~mask) | (fill[bit / 8] & mask));
	}
	memset(out, 0, sizeof *out);
	if (p->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
	}
}

/* The address a source binds to for a connection to `dest`. @return 0,
 * 1 when the kernel picks (default route, upstream proxy), or a libuv error. */
static int source_address(const struct conf_source *cs, const struct sockaddr *adhoc,
			  const struct sockaddr *dest, const void *key, size_t keylen,
			  struct sockaddr_storage *src)
{
	if (adhoc)
		memcpy(src, adhoc,
		       adhoc->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6));
	else if (cs->kind == CONF_SOURCE_ADDRESS)
		*src = cs->addr;
	else if (cs->kind == CONF_SOURCE_PREFIX)
		prefix_address(cs, key, keylen, src);
	else
		return 1;
	if (src->ss_family != dest->sa_family)
		return UV_EAFNOSUPPORT;
	if (src->ss_family == AF_INET)
		((struct sockaddr_in *)src)->sin_port = 0;
	else
		((struct sockaddr_in6 *)src)->sin6_port = 0;
	return 0;
}

static int set_one(int fd, int level, int opt)
{
	int one = 1;

	return setsockopt(fd, level, opt, &one, sizeof one) < 0 ? -errno : 0;
}

int egress_bind(uv_tcp_t *h, const struct conf_source *cs, const struct sockaddr *adhoc,
		const struct sockaddr *dest, const void *key, size_t keylen)
{
	struct sockaddr_storage src;
	uv_os_fd_t fd;
	int rc = source_address(cs, adhoc, dest, key, keylen, &src);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	if (uv_fileno((uv_handle_t *)h, &fd) < 0)
		return UV_EBADF;
	/* Defer the port choice to connect(), so one source address can hold a
	 * full 4-tuple space instead of ~28k ports in all. */
	if ((rc = set_one(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT)) < 0)
		return rc;
	/* Only prefix sources bind to addresses the host routes but does not
	 * carry; on plain sources FREEBIND would hide EADDRNOTAVAIL, the very
	 * signal that the address is unplumbed. */
	if (!adhoc && cs->kind == CONF_SOURCE_PREFIX &&
	    (rc = src.ss_family == AF_INET6 ? set_one(fd, IPPROTO_IPV6, IPV6_FREEBIND)
					    : set_one(fd, IPPROTO_IP, IP_FREEBIND)) < 0)
		return rc;
	/* bind(2) itself rather than uv_tcp_bind(), which also sets
	 * SO_REUSEADDR: useless here, and a system call per connection. */
	if (bind(fd, (const struct sockaddr *)&src,
		 src.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					  : sizeof(struct sockaddr_in6)) < 0)
		return -errno;
	return 0;
}

int egress_probe_bind(const struct sockaddr *addr)
{
	struct sockaddr_storage ss;
	socklen_t len =
	    addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int fd, rc;

	memcpy(&ss, addr, len);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Same options as the real attempt, so the probe takes no port. */
	rc = set_one(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT);
	if (rc == 0 && bind(fd, (struct sockaddr *)&ss, len) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int egress_probe_prefix(const struct conf_source *cs)
{
	struct sockaddr_storage a, b;
	socklen_t len =
	    cs->prefix.family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	struct timeval tv = {.tv_sec = 1};
	int lfd = -1, cfd = -1, rc = 0;
	int level = cs->prefix.family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
	int opt = cs->prefix.family == AF_INET ? IP_FREEBIND : IPV6_FREEBIND;

	/* Two addresses of the prefix: a listener on one, a client on the
	 * other. The connection only completes if the host routes the prefix
	 * to itself (ip -6 route add local PREFIX dev lo). */
	prefix_address(cs, "sockpool-probe-listen", 21, &a);
	prefix_address(cs, "sockpool-probe-client", 21, &b);
	lfd = socket(cs->prefix.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(cs->prefix.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0) {
		rc = -errno;
		goto out;
	}
	if ((rc = set_one(lfd, level, opt)) < 0 || (rc = set_one(cfd, level, opt)) < 0)
		goto out;
	if (setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
	    bind(lfd, (struct sockaddr *)&a, len) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) < 0 ||
	    bind(cfd, (struct sockaddr *)&b, len) < 0 ||
	    connect(cfd, (struct sockaddr *)&a, len) < 0)
		rc = -errno;
out:
	if (lfd >= 0)
		close(lfd);
	if (cfd >= 0)
		close(cfd);
	return rc;
}
