/* lsock: listening sockets made by hand, see lsock.h. */
#include "lsock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

int lsock_open(const struct sockaddr *addr, const struct lsock_opts *opts)
{
	static const struct lsock_opts defaults = {0};
	int family, fd, one = 1, rc;
	socklen_t len;

	if (!addr)
		return -EINVAL;
	if (!opts)
		opts = &defaults;
	family = addr->sa_family;
	if (family == AF_INET)
		len = sizeof(struct sockaddr_in);
	else if (family == AF_INET6)
		len = sizeof(struct sockaddr_in6);
	else
		return -EINVAL;
	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		goto fail;
	/* Must be set on every socket of the group before its bind(). */
	if (opts->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
		goto fail;
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
		goto fail;
	if (bind(fd, addr, len) < 0)
		goto fail;
	/* Exim may send its greeting as Fast Open data; a kernel without TFO
	 * support just refuses the option, which costs nothing. */
	if (opts->fastopen_qlen > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &opts->fastopen_qlen,
			   sizeof opts->fastopen_qlen);
	/* Accepted sockets inherit these, which saves system calls on every
	 * connection. */
	if (opts->nodelay)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (opts->keepalive_ms) {
		int idle = (int)(opts->keepalive_ms / 1000 ?: 1);
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
	}
	if (listen(fd, opts->backlog > 0 ? opts->backlog : 1024) < 0)
		goto fail;
	return fd;
fail:
	rc = -errno;
	close(fd);
	return rc;
}
