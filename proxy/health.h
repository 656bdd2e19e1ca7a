/* health: knowing before traffic does (SPEC 4.2.1). Internal to proxy/.
 *
 * - Address watch: while the configuration has address sources, the
 *   kernel's address events (addrwatch.h) are followed. An address that
 *   goes (or turns tentative or dadfailed) suspends its source at once,
 *   reason unplumbed, for the source's own duration, without a request
 *   being tried on it (pool_report_absent). An address that comes back ends
 *   that suspension when the source has `resume_when_plumbed = yes`.
 *   Prefix sources are not watched: their addresses are routed to the host
 *   (`ip route add local PREFIX dev lo`), not plumbed one by one, so no
 *   address event says anything about them; the route probe at start does.
 * - Start and reload check: every address source is test-bound (socket +
 *   bind(addr:0), no connect: a few system calls that never wait). Missing
 *   ones are suspended as unplumbed and named in one WARN line.
 * - When an unplumbed suspension expires while the watch knows the address
 *   is still missing, the source is suspended again at once, so requests
 *   do not try a missing address while the watch runs (one in that very
 *   instant may, and is retried on the next source).
 * - Upstream health checks (upcheck.h), started with the health and made
 *   again for each new generation by health_reload().
 *
 * Everything runs on px->loop's thread and works on px->gen, the current
 * generation. Pool changes reach the rest of the proxy as pool events
 * (poolwatch.c); nothing here calls the proxy back.
 */
#ifndef SOCKPOOL_HEALTH_H
#define SOCKPOOL_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "proxy.h"

struct health;

/* Start everything above for px->gen: the address watch (a WARN, not an
 * error, when netlink is not available), the start check, the upstream
 * checks. Call it as health_start(px, &px->health) once px->gen is set,
 * before the loop runs: a pool watcher registered here finds the health
 * through px->health (NULL after health_stop). `px` must outlive every
 * generation. @return 0 and *out (stop with health_stop), -EINVAL, -ENOMEM. */
int health_start(struct proxy_main *px, struct health **out);

/* px->gen was replaced by a reload: check the addresses of the new
 * generation, start the watch if it now has address sources, and replace
 * the upstream checks with the new generation's. NULL is a no-op. */
void health_reload(struct health *h);

/* Stop the watch and the checks (an in-flight check is abandoned). Handles
 * close in their callbacks, so the loop must run once more; `h` is invalid
 * afterwards. NULL is a no-op. */
void health_stop(struct health *h);

/* Whether the address of conf source `conf_index` of px->gen is on the host
 * now (from the watch, or a test bind when the watch does not run).
 * @return 1 or 0; -1 for a source without an address of its own (default
 *         route, prefix, upstream proxy) or an index out of range. */
int health_present(const struct health *h, size_t conf_index);

/* One source of `conf` whose address cannot be bound on this host now. */
typedef void (*health_missing_cb)(const struct conf_source *cs, int err, void *ctx);

/* Test-bind every address source of `conf` (for `--check`, and the start
 * check); call `cb` (may be NULL) for each one missing, with the positive
 * errno of bind(). @return how many are missing. */
size_t health_missing_addresses(const struct conf *conf, health_missing_cb cb, void *ctx);

#endif
