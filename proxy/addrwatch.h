/* addrwatch: the local addresses the host carries now, kept from the
 * kernel's rtnetlink address events. Internal to proxy/.
 *
 * It answers "is this address usable here now?" and reports each change of
 * that answer. An address counts as present when at least one interface
 * carries it and that copy is not tentative (IPv6 DAD not finished, unless
 * optimistic) and not dadfailed: exactly when bind() on it would work.
 *
 * At start, and again whenever the kernel reports that it dropped events
 * (ENOBUFS on the socket), the whole address table is dumped; after a
 * resynchronisation every address whose presence differs from what the watch
 * believed is reported, so a burst of lost events costs a dump, not
 * blindness. Events that arrive while a dump runs make it run again (at most
 * ADDRWATCH_REDUMP_MAX times in a row).
 *
 * Knows nothing of sources or pools: the caller maps addresses to sources.
 * Runs on one loop's thread; not thread-safe.
 */
#ifndef SOCKPOOL_ADDRWATCH_H
#define SOCKPOOL_ADDRWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define ADDRWATCH_REDUMP_MAX 3

struct addrwatch;

/* A change of presence of `addr` (AF_INET or AF_INET6, port 0). `addr` is
 * valid during the call only. The callback may call addrwatch_present() but
 * not addrwatch_stop(). */
typedef void (*addrwatch_cb)(const struct sockaddr *addr, bool present, void *ctx);

/* A watch that is not attached to any socket yet: its table is empty and
 * unknown (addrwatch_present() answers -EAGAIN) until the first dump is in.
 * @return 0 and *out, -EINVAL, -ENOMEM. */
int addrwatch_new(addrwatch_cb cb, void *ctx, struct addrwatch **out);

/* Open the netlink socket on `loop`, subscribe to IPv4 and IPv6 address
 * events and ask for the first dump. @return 0 or -errno (no netlink here,
 * e.g. a restricted container); on error the watch stays usable as a table. */
int addrwatch_start(struct addrwatch *w, uv_loop_t *loop);

/* Whether `addr` is usable on this host now (port ignored, v4-mapped IPv6
 * counts as IPv4). @return 1, 0, -EAGAIN (the first dump is not in yet),
 * -EINVAL (not AF_INET/AF_INET6). O(log n). */
int addrwatch_present(const struct addrwatch *w, const struct sockaddr *addr);

/* Addresses (interface copies) in the table now. */
size_t addrwatch_count(const struct addrwatch *w);

/* Resynchronisations done after lost events (the first dump not counted). */
uint64_t addrwatch_resyncs(const struct addrwatch *w);

/* Stop and free: with a socket, in the poll handle's close callback (the loop
 * must run once more); without one, now. No callback runs afterwards. NULL
 * is a no-op. */
void addrwatch_stop(struct addrwatch *w);

/* Hand netlink messages to the watch as if read from its socket: event
 * messages (RTM_NEWADDR/RTM_DELADDR, sequence 0) and replies to the running
 * dump (sequence addrwatch_dump_seq(), ended by NLMSG_DONE). The socket
 * reader uses this; unit tests call it directly. @return 0 or -EINVAL for
 * a truncated message. */
int addrwatch_feed(struct addrwatch *w, const void *buf, size_t len);

/* Events were lost: start a resynchronisation. With a socket the dump
 * request is sent; without one (tests) the dump's replies are expected
 * through addrwatch_feed(). @return 0 or -errno from send(). */
int addrwatch_lost(struct addrwatch *w);

/* Sequence number of the dump in progress, 0 when none. */
uint32_t addrwatch_dump_seq(const struct addrwatch *w);

#endif
