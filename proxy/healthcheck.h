/* healthcheck: `sockpool --healthcheck`, a probe of a running sockpool that
 * follows its configuration (for a container's HEALTHCHECK, no curl needed).
 *
 * With admin_listen set it sends `GET /healthz HTTP/1.0` there and wants a
 * 200; with the admin endpoint off it sends a SOCKS5 greeting to the first
 * listener and wants a method chosen. An unspecified address (0.0.0.0, ::)
 * is probed on the loopback address of its family. Plain blocking sockets,
 * no libuv: it runs and exits.
 */
#ifndef SOCKPOOL_HEALTHCHECK_H
#define SOCKPOOL_HEALTHCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/* Probe the sockpool that `conf` describes, giving up after timeout_ms in all.
 * @return 0 when healthy; otherwise -errno (-ECONNREFUSED, -ETIMEDOUT, ...,
 *         -EPROTO for an answer that is not a healthy one) with what was seen
 *         in msg (always NUL-terminated when msglen > 0). On success msg says
 *         what was probed. */
int healthcheck_run(const struct conf *conf, uint64_t timeout_ms, char *msg, size_t msglen);

#endif
