/* proxy: the process and its workers.
 *
 * Internal to proxy/. `struct proxy_main` is the process: the main loop with
 * the signals, the admin endpoint, the address watch and the pools' expiry
 * timer, and what every worker shares (the current generation, the pool
 * lock, per-client counts, the listening addresses). A `struct proxy` is one
 * worker: an event loop with its own listening sockets, sessions, relay
 * buffer, counters and timers. `workers = 1` is one worker on the main loop;
 * `workers = N` is N threads (workers.h), told what to do by command.
 *
 * Configuration, pools and users live in a `struct proxy_gen` (a
 * generation): a reload makes a new generation, every worker takes it for
 * its next connections, and sessions keep the one they started with until
 * they end, so a reload never pulls data from under a live connection.
 */
#ifndef SOCKPOOL_PROXY_H
#define SOCKPOOL_PROXY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "clients.h"
#include "conf.h"
#include "gen.h"
#include "poolsync.h"

struct session;
struct authq;
struct authq_throttle;
struct slab;
struct splice_loop;

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Addresses that left the host kept for the workers (see proxy_main.gone). */
#define PROXY_GONE_RING 16

/* Size of the loop-wide relay read buffer. */
#define PROXY_RELAY_BUF (256 * 1024)

/* One listening address of the configuration. Every worker opens its own
 * socket on it (SO_REUSEPORT when there are several); what they share lives
 * here. Settings are those it was opened with: a reload does not rebind
 * (pool names are looked up again in the current generation). */
struct listen_addr {
	char *pool; /* `pool=`, NULL = default_pool */
	bool source_same;
	unsigned line;			   /* in the configuration, for errors */
	struct sockaddr_storage conf_addr; /* as configured (port 0 stays 0) */
	struct sockaddr_storage bound;	   /* the address really bound */
	char bound_str[64];
	bool absent; /* not opened: no IPv6 here (embedded default only) */
	/* Under proxy_main.listen_mu: */
	bool paused;	 /* on_pool_exhausted = refuse closed it in every worker */
	unsigned n_open; /* workers whose socket is open now */
};

/* A worker's socket on one listen_addr. */
struct listener {
	uv_tcp_t tcp;
	struct proxy *px;
	struct listen_addr *la;
	char *pool;	       /* la->pool */
	bool source_same;      /* la->source_same */
	uint64_t keepalive_ms; /* tcp_keepalive set on the socket, inherited by accepts */
	bool open;	       /* the handle is initialised and not closing */
	bool closing;	       /* uv_close() called, callback pending */
	bool refused;	       /* closed by on_pool_exhausted = refuse */
	bool starved;	       /* closed for want of descriptors until px->listen_retry */
	char *bound_str;       /* la->bound_str */
};

struct admin;
struct health;
struct throttle;
struct emfile_watch;
struct confwatch;
struct workers;
struct worker;

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

/* One worker's counters. Written only by that worker's thread (stat.h),
 * read by the admin endpoint on the main thread, which sums the workers'. */
struct proxy_stats {
	uint64_t accepted; /* connections accepted by this worker */
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

/* Worker thread: count one observation. */
void proxy_hist_observe(struct proxy_hist *h, double ms);
const char *proxy_result_name(enum proxy_result r);
const char *proxy_refusal_name(enum proxy_refusal r); /* "allow", "max_connections", ... */
/* Any thread: add `one` worker's counters into `sum` (relaxed reads). */
void proxy_stats_add(struct proxy_stats *sum, const struct proxy_stats *one);

/* One worker: an event loop and what it serves. With workers = 1 it runs on
 * the main loop; otherwise on a thread of its own (workers.h). Everything
 * here is touched only from that loop's thread, except `stats` (stat.h). */
struct proxy {
	struct proxy_main *main;
	unsigned index;
	uv_loop_t *loop;
	struct proxy_gen *gen;	    /* this worker's reference to the current generation */
	struct listener *listeners; /* one per main->addrs */
	size_t n_listeners;
	size_t n_listeners_open;
	struct session *sessions; /* intrusive doubly linked list */
	size_t n_sessions;
	uint64_t next_session_id;    /* ids are index + 1 + k * n_workers: unique */
	uint64_t gone_seen;	     /* proxy_main.gone events taken, by seq */
	bool stopping;		     /* told to drain */
	struct authq *authq;	     /* password checks: capped, fair (authq.h), per worker */
	struct throttle *throttle;   /* rate-limited WARNs (throttle.h), the process's */
	struct emfile_watch *emfile; /* notices fd exhaustion at accept (emfile.h) */
	uv_timer_t listen_retry;     /* reopens starved listeners (server.c) */
	bool listen_retry_init;	     /* listen_retry is initialised and not closed */
	struct proxy_stats stats;
	/* Per-connection state in slabs of its own (slab.h): a burst of
	 * handshakes must not leave holes in the heap between the sessions
	 * that outlive it, and a closed burst gives its memory back. */
	struct slab *slab_session, *slab_hs, *slab_attempt;
	struct splice_loop *splice; /* relay = splice; made on first use */
	bool splice_failed;	    /* splice(2) does not work here: copy */
	char relay_buf[PROXY_RELAY_BUF];
};

/* The process: the main loop and what every worker shares. The main thread
 * owns it; workers read what is marked, under the lock named. */
struct proxy_main {
	uv_loop_t *loop; /* &loop_storage: the main loop, not libuv's default */
	uv_loop_t loop_storage;
	const char *reload_path; /* reloaded on SIGHUP; NULL = the embedded default */
	struct proxy_gen *gen;	 /* current generation; workers read it under gen_mu */
	uv_mutex_t gen_mu;
	struct poolsync sync;		 /* the lock of every pool set */
	struct clients clients;		 /* per-client counts, all workers */
	atomic_uint_fast64_t n_sessions; /* all workers, for max_connections */
	struct listen_addr *addrs;
	size_t n_addrs;
	uv_mutex_t listen_mu; /* listen_addr.paused and n_open */
	/* Addresses that left the host, for the workers' connecting sessions
	 * (WORKER_CMD_ADDR_GONE); the last PROXY_GONE_RING of them, under
	 * gone_mu. A worker that misses some lets those connects time out. */
	struct {
		struct sockaddr_storage addr;
		uint64_t seq;
	} gone[PROXY_GONE_RING];
	uint64_t gone_seq;
	uv_mutex_t gone_mu;
	unsigned n_workers;
	struct proxy *px;	 /* n_workers of them */
	struct workers *threads; /* NULL when n_workers == 1 (px[0] runs on this loop) */
	bool workers_done;	 /* every worker thread's loop has ended */
	bool finished;		 /* the main loop's handles are closing */
	int *fds;		 /* during start: every worker's sockets, see addrs_open() */
	uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
	/* Delays for repeated login failures, shared so that a client gains
	 * nothing by spreading its tries over the workers; under auth_mu. */
	struct authq_throttle *auth_throttle;
	uv_mutex_t auth_mu;
	uv_timer_t expire_timer; /* the pools' earliest suspension end */
	uv_timer_t shutdown_timer;
	uv_async_t pools_async; /* a pool source went ONLINE or OFFLINE (poolwatch.c) */
	bool pools_watched;	/* pools_async is open (under sync's lock) */
	bool stopping;
	int exit_code;
	/* What a reload cannot change, as the process started with it. */
	bool boot_admin_enabled;
	struct sockaddr_storage boot_admin_listen;
	char *boot_user;
	unsigned boot_workers;
	struct admin *admin;		     /* NULL when admin_listen is off */
	struct sockaddr_storage admin_bound; /* its address, for the destination policy */
	bool has_admin_bound;
	struct health *health;	     /* address watch, start check, upstream checks (health.h) */
	struct confwatch *confwatch; /* NULL unless reload_on_change */
	uint64_t started_wall_ms;
};

/* Run sockpool on `conf` (ownership passes to the proxy) until SIGTERM or
 * SIGINT has drained every session. `conf_path` (may be NULL) is reloaded on
 * SIGHUP. @return the process exit code. */
int proxy_run(struct conf *conf, const char *conf_path);

/* The main loop's view of every worker's counters, summed now. */
void proxy_stats_sum(struct proxy_main *m, struct proxy_stats *out);

/* poolwatch.c: the pools' watchers. A source going ONLINE or OFFLINE
 * (expiry, a failure, the admin's suspend or resume, the address watch)
 * schedules, on the loop and outside the pool call, a re-arm of the expiry
 * timer and a reopen of `refuse`-mode listeners whose pool has an eligible
 * source again. Nobody calls a "pools changed" function by hand.
 * @return 0 or a libuv error. */
int poolwatch_start(struct proxy_main *m);
/* The current generation was swapped (reload): look at its pools now. */
void poolwatch_kick(struct proxy_main *m);
/* Close the watcher's handles (shutdown). */
void poolwatch_stop(struct proxy_main *m);

/* server.c, main loop: reopen, in every worker, the listeners closed by
 * `refuse` whose pool has an eligible source again, on the port they had. */
void proxy_listeners_resume(struct proxy_main *m);

/* Any worker: on_pool_exhausted = refuse: close the listeners that serve
 * pool `name`, in every worker, until one of its sources is eligible again. */
void proxy_pool_exhausted(struct proxy *px, const char *name);

/* clients.c: per-client-address accounting for max_connections_per_client,
 * across workers. @return 0, or -EBUSY when the client is at its limit. */
int proxy_client_add(struct proxy *px, const struct sockaddr *addr);
void proxy_client_remove(struct proxy *px, const struct sockaddr *addr);

/* A session of worker `px` has ended and freed itself. */
void proxy_session_gone(struct proxy *px);

/* session.c: free the per-connection slabs once every session is gone. */
void session_slabs_destroy(struct proxy *px);
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
/* server.c, main loop: the same for every worker's sessions (each worker
 * moves its own and logs how many). */
void proxy_address_gone(struct proxy_main *m, const struct sockaddr *addr);

#endif
