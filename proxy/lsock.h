/* lsock: listening sockets made by hand, to be handed to uv_tcp_open().
 *
 * Internal to proxy/. libuv 1.44 has no UV_TCP_REUSEPORT (it came in 1.49)
 * and no way to set TCP_FASTOPEN between bind() and listen(), so sockpool
 * makes its listening sockets itself: with SO_REUSEPORT every worker thread
 * opens its own socket on the same address and the kernel spreads incoming
 * connections over them.
 *
 * Thread safety: lsock_open() touches nothing but the new socket; call it
 * from any thread.
 */
#ifndef SOCKPOOL_LSOCK_H
#define SOCKPOOL_LSOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct lsock_opts {
	bool reuseport;	       /* SO_REUSEPORT: further sockets may bind the same address */
	int backlog;	       /* listen(2) backlog; <= 0 = 1024 */
	int fastopen_qlen;     /* TCP_FASTOPEN queue; 0 = off. Ignored by kernels without it */
	bool nodelay;	       /* TCP_NODELAY, inherited by accepted sockets */
	uint64_t keepalive_ms; /* SO_KEEPALIVE + TCP_KEEPIDLE (seconds, at least 1); 0 = off */
};

/* Make a non-blocking, close-on-exec TCP socket listening on `addr`
 * (AF_INET or AF_INET6; an IPv6 socket is IPV6_V6ONLY, so [::]:P and
 * 0.0.0.0:P can both be listened on). SO_REUSEADDR is always set.
 * With port 0 the kernel picks the port: read it with getsockname() and pass
 * that address to further sockets with `reuseport`.
 * @return the descriptor (the caller owns it: uv_tcp_open() it or close it),
 *         or -EINVAL (bad arguments), -EADDRINUSE, -EADDRNOTAVAIL, -EACCES
 *         and the other errnos of socket/bind/listen. */
int lsock_open(const struct sockaddr *addr, const struct lsock_opts *opts);

#endif
