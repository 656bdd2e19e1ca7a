/* proxy: the process-wide state shared by listeners and sessions.
 *
 * Internal to proxy/. One `struct proxy` owns the event loop's listeners,
 * signal handlers and timers. Configuration, pools and users live in a
 * `struct proxy_gen` (a generation): a reload makes a new generation and
 * sessions keep the one they started with until they end, so a reload never
 * pulls data from under a live connection.
 */
#ifndef SOCKPOOL_PROXY_H
#define SOCKPOOL_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "gen.h"

struct session;
struct authq;
struct authq_throttle;

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Size of the loop-wide relay read buffer. */
#define PROXY_RELAY_BUF (256 * 1024)

/* Listeners keep the settings they were opened with: a reload does not
 * rebind them (pool names are looked up again in the current generation). */
struct listener {
	uv_tcp_t tcp;
	struct proxy *px;
	char *pool; /* `pool=`, NULL = default_pool */
	bool source_same;
	struct sockaddr_storage conf_addr; /* as configured (port 0 stays 0) */
	uint64_t keepalive_ms; /* tcp_keepalive set on the socket, inherited by accepts */
	bool open;	       /* the handle is initialised and not closing */
	bool closing;	       /* uv_close() called, callback pending */
	bool paused;	       /* closed by on_pool_exhausted = refuse */
	struct sockaddr_storage bound;
	char bound_str[64];
};

struct client_slot; /* per-client-address connection counts */
struct admin;
struct health;
struct throttle;
struct emfile_watch;
struct confwatch;

/* How a session ended, for metrics (sockpool_connections_total{result}). */
enum proxy_result {
	PROXY_RESULT_OK,	  /* relayed, then closed */
	PROXY_RESULT_REFUSED,	  /* not in allow, over a connection limit */
	PROXY_RESULT_HANDSHAKE,	  /* bad or incomplete handshake, timeout */
	PROXY_RESULT_AUTH,	  /* authentication failed */
	PROXY_RESULT_NOT_ALLOWED, /* deny_destinations, BIND refused */
	PROXY_RESULT_DEST,	  /* destination refused/unreachable/timeout/DNS */
	PROXY_RESULT_EXHAUSTED,	  /* no eligible source */
	PROXY_RESULT_ERROR,	  /* anything else */
	PROXY_RESULT_COUNT
};

/* Why a connection was refused at accept, for metrics
 * (sockpool_refused_total{reason}, reason = proxy_refusal_name()). */
enum proxy_refusal {
	PROXY_REFUSED_ALLOW,	       /* client address not in allow */
	PROXY_REFUSED_MAX_CONNECTIONS, /* max_connections reached */
	PROXY_REFUSED_PER_CLIENT,      /* max_connections_per_client reached */
	PROXY_REFUSED_COUNT
};

/* Latency histogram buckets, upper bounds in ms (plus +Inf). */
#define PROXY_HIST_BUCKETS 12
extern const double proxy_hist_bounds_ms[PROXY_HIST_BUCKETS];

struct proxy_hist {
	uint64_t buckets[PROXY_HIST_BUCKETS + 1]; /* non-cumulative; last = +Inf */
	uint64_t count;
	double sum_ms;
};

/* Process-wide counters, updated on the loop thread. */
struct proxy_stats {
	uint64_t active;   /* sessions open now */
	uint64_t relaying; /* sessions in the relay phase now */
	uint64_t total[PROXY_RESULT_COUNT];
	uint64_t bytes_up;		       /* client -> destination */
	uint64_t bytes_down;		       /* destination -> client */
	struct proxy_hist handshake;	       /* accept -> request parsed */
	struct proxy_hist connect;	       /* request parsed -> success reply */
	uint64_t stalled;		       /* relays reset by stall_timeout */
	uint64_t refused[PROXY_REFUSED_COUNT]; /* connections refused at accept, by reason */
	uint64_t accept_errors;		       /* accept() failures, EMFILE/ENFILE included */
	uint64_t accept_emfile;		       /* of those: out of file descriptors */
	uint64_t dest_denied;		       /* requests refused by the destination policy */
	uint64_t auth_delayed;		       /* failed logins answered after a throttle delay */
	uint64_t auth_queue_full;   /* logins over a password-check cap: parked or refused */
	uint64_t reloads_ok;	    /* reloads applied */
	uint64_t reloads_failed;    /* reloads rejected */
	uint64_t reload_ok_wall_ms; /* wall time of the last applied reload, 0 = none */
};

void proxy_hist_observe(struct proxy_hist *h, double ms);
const char *proxy_result_name(enum proxy_result r);
const char *proxy_refusal_name(enum proxy_refusal r); /* "allow", "max_connections", ... */

struct proxy {
	uv_loop_t *loop; /* &loop_storage: the proxy's own loop, not libuv's default */
	uv_loop_t loop_storage;
	const char *reload_path; /* reloaded on SIGHUP; NULL = the embedded default */
	struct proxy_gen *gen;	 /* current generation */
	struct listener *listeners;
	size_t n_listeners;
	size_t n_listeners_open;
	struct session *sessions; /* intrusive doubly linked list */
	size_t n_sessions;
	uint64_t next_session_id;
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
	uv_timer_t expire_timer; /* the pools' earliest suspension end */
	uv_timer_t shutdown_timer;
	uv_async_t pools_async; /* a pool source went ONLINE or OFFLINE (poolwatch.c) */
	bool pools_watched;	/* pools_async is open */
	bool stopping;
	int exit_code;
	struct authq *authq;		      /* password checks: capped, fair (authq.h) */
	struct authq_throttle *auth_throttle; /* delays for repeated failures */
	struct proxy_stats stats;
	/* What a reload cannot change, as the process started with it. */
	bool boot_admin_enabled;
	struct sockaddr_storage boot_admin_listen;
	char *boot_user;
	unsigned boot_workers;
	struct admin *admin;	     /* NULL when admin_listen is off */
	struct health *health;	     /* address watch, start check, upstream checks (health.h) */
	struct throttle *throttle;   /* rate-limited WARNs (throttle.h) */
	struct emfile_watch *emfile; /* notices fd exhaustion at accept (emfile.h) */
	struct confwatch *confwatch; /* NULL unless reload_on_change */
	uint64_t started_wall_ms;
	struct client_slot *clients; /* open-addressing table, see server.c */
	size_t clients_cap;
	size_t clients_used;
	char relay_buf[PROXY_RELAY_BUF];
};

/* Run sockpool on `conf` (ownership passes to the proxy) until SIGTERM or
 * SIGINT has drained every session. `conf_path` (may be NULL) is reloaded on
 * SIGHUP. @return the process exit code. */
int proxy_run(struct conf *conf, const char *conf_path);

/* poolwatch.c: the pools' watchers. A source going ONLINE or OFFLINE
 * (expiry, a failure, the admin's suspend or resume, the address watch)
 * schedules, on the loop and outside the pool call, a re-arm of the expiry
 * timer and a reopen of `refuse`-mode listeners whose pool has an eligible
 * source again. Nobody calls a "pools changed" function by hand.
 * @return 0 or a libuv error. */
int poolwatch_start(struct proxy *px);
/* The current generation was swapped (reload): look at its pools now. */
void poolwatch_kick(struct proxy *px);
/* Close the watcher's handles (shutdown). */
void poolwatch_stop(struct proxy *px);

/* server.c: reopen listeners closed by `refuse` whose pool has an eligible
 * source again, on the port they had. */
void proxy_listeners_resume(struct proxy *px);

/* on_pool_exhausted = refuse: close the listeners that serve pool `name`
 * until one of its sources is eligible again. */
void proxy_pool_exhausted(struct proxy *px, const char *name);

/* Per-client-address accounting for max_connections_per_client.
 * @return 0, or -EBUSY when the client is at its limit. */
int proxy_client_add(struct proxy *px, const struct sockaddr *addr);
void proxy_client_remove(struct proxy *px, const struct sockaddr *addr);

/* A session has ended and freed itself. */
void proxy_session_gone(struct proxy *px);

/* session.c: take the connection that is pending on `l`. */
void session_accept(struct listener *l);
/* Close every session, with RST, now (shutdown timeout). */
void session_close_all(struct proxy *px);
/* attempt.c: the address `addr` has left the host (the address watch). A
 * connect from it will never hear its answer, so every session connecting
 * from it gives that attempt up now, as a vanished source (SPEC 4.2), and
 * goes on with the next source instead of waiting for connect_timeout.
 * Relays are left alone: if the address comes back soon, TCP carries on.
 * @return how many attempts were moved. */
size_t attempt_address_gone(struct proxy *px, const struct sockaddr *addr);

#endif
