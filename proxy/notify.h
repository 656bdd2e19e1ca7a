/* notify: the service manager's readiness protocol (sd_notify(3)).
 *
 * systemd's `Type=notify` units pass a datagram socket in $NOTIFY_SOCKET; a
 * process that runs without one (a shell, a container) is not notified and
 * every call here is a no-op returning 0. With libsystemd at build time the
 * messages go through sd_notify(); without it a small built-in writer speaks
 * the same protocol (one AF_UNIX datagram, a path or an abstract `@name`).
 */
#ifndef SOCKPOOL_NOTIFY_H
#define SOCKPOOL_NOTIFY_H

/* Send `state` (newline-separated `KEY=VALUE` assignments) as one datagram.
 * @return 1 when sent, 0 when there is no $NOTIFY_SOCKET, -errno on failure
 *         (-EINVAL for a NULL state or a malformed socket address). */
int notify_send(const char *state);

/* READY=1: listeners are open (at start), or a reload finished. */
int notify_ready(void);

/* RELOADING=1 with MONOTONIC_USEC=now, as systemd >= 253 asks for. */
int notify_reloading(void);

/* STOPPING=1: shutdown began. */
int notify_stopping(void);

#endif
