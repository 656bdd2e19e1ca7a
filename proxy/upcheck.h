/* upcheck: health checks of upstream SOCKS5 sources (SPEC 4.2.1). Internal
 * to proxy/.
 *
 * A source with socks5_proxy_server and `health_check = PERIOD` gets, every
 * period and the first time at once, a TCP connect to its upstream and a
 * SOCKS5 greeting, plus the RFC 1929 exchange when it has credentials
 * (upstream_start() without destination: no CONNECT is sent). Each check is
 * bounded by connect_timeout, at most the period.
 * - A failure is reported like a failed request: POOL_FAILURE_PROXY_UNHEALTHY,
 *   so suspend_when_proxy_unhealthy and its trigger apply.
 * - A pass records the source's last success, clears its proxy_unhealthy
 *   window and, with `resume_when_healthy = yes`, ends a proxy_unhealthy
 *   suspension (pool_report_check_ok).
 * Logged: INFO when a source's checks start failing and when they pass
 * again, DEBUG for every check.
 *
 * The checks belong to the generation that was current at upcheck_start()
 * (px->gen); stop them before px->gen changes and start new ones after.
 * Everything runs on px->loop's thread.
 */
#ifndef SOCKPOOL_UPCHECK_H
#define SOCKPOOL_UPCHECK_H

#include "proxy.h"

struct upchecks;

/* Start the checks of every upstream source of px->gen that has
 * health_check set (none is fine: an empty set). `px` must outlive the set.
 * @return 0 and *out, -EINVAL, -ENOMEM. */
int upcheck_start(struct proxy_main *px, struct upchecks **out);

/* Stop every check now: no report reaches the pools afterwards. A check in
 * flight is abandoned; its handles close and free themselves, so the loop
 * must run once more. NULL is a no-op. */
void upcheck_stop(struct upchecks *u);

#endif
