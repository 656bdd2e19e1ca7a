/* admin: the HTTP endpoint on `admin_listen` (SPEC 6), served by
 * libmicrohttpd on the proxy's own event loop.
 *
 * GET /metrics (Prometheus text 0.0.4), GET /status (JSON), GET /healthz,
 * POST /sources/NAME/suspend?duration=D and POST /sources/NAME/resume.
 * POSTs need `Authorization: Bearer <admin_token>` when a token is set, and
 * come from loopback otherwise.
 *
 * Threading: libmicrohttpd runs without a thread of its own; a uv_poll_t on
 * its epoll fd and a uv_timer_t drive it, so every handler runs on the main
 * loop's thread. It reads the pools under the pool lock and sums the
 * workers' counters with relaxed reads (stat.h).
 */
#ifndef SOCKPOOL_ADMIN_H
#define SOCKPOOL_ADMIN_H

#include <sys/socket.h>

#include "proxy.h"

struct admin;

/* Start serving on `addr` (AF_INET or AF_INET6; port 0 picks a free port)
 * and log `INFO admin: listening addr=...` with the address really bound.
 * Call on px->loop's thread only; `px` must outlive the admin.
 * @return 0 and *out (stop it with admin_stop), -EINVAL (bad arguments),
 *         -EADDRINUSE and other bind/listen errnos, -ENOMEM, -EIO (the
 *         HTTP daemon did not start). On error nothing is left open. */
int admin_start(struct proxy_main *px, const struct sockaddr *addr, struct admin **out);

/* The address the admin endpoint is bound to (its real port).
 * @return 0, or -EINVAL for NULL arguments. */
int admin_bound(const struct admin *a, struct sockaddr_storage *out);

/* Stop serving: close the listening socket and every admin connection now,
 * and close the libuv handles; the admin frees itself in their close
 * callbacks, so the loop must run once more. `a` is invalid afterwards.
 * NULL is a no-op. */
void admin_stop(struct admin *a);

#endif
