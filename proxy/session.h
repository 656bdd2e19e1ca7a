/* session: what the files of one client connection share.
 *
 * Internal to proxy/, included only by the session files:
 *   session.c   lifetime (refs, close, free), accept, the session timer,
 *               handshake replies;
 *   handshake.c greeting, password auth and its queue, the request, KumoMTA
 *               BIND and source=same;
 *   attempt.c   the outbound attempt: resolve, destination policy, pick,
 *               bind, connect, upstream proxy glue, and the retry loop that
 *               acts on classify.h's verdicts;
 *   relay.c     the relay: backpressure, half-close, resets, idle and stall
 *               limits.
 * A session embeds its client handle and timer and owns at most one
 * outbound attempt at a time. `refs` counts what is still open or pending
 * (handles, writes, DNS and auth requests); the session frees itself when the
 * last of them has called back. Every callback first checks the state it
 * expects.
 */
#ifndef SOCKPOOL_SESSION_H
#define SOCKPOOL_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "authq.h"
#include "pool.h"
#include "proxy.h"
#include "socks5.h"
#include "splice.h"

struct upstream;

/* Destinations tried per request: a domain's first addresses. */
#define SESSION_MAX_DESTS 8
/* Handshake bytes kept: greeting + auth + request, pipelined, plus a little
 * early data. */
#define SESSION_HS_BUF (SOCKS5_GREETING_MAX + SOCKS5_AUTH_MAX + 2 * SOCKS5_REQUEST_MAX + 256)

enum session_state {
	S_GREETING,
	S_AUTH,
	S_AUTH_CHECK,  /* password hash being checked off the loop */
	S_AUTH_FAILED, /* failed login: its reply waits out the throttle delay */
	S_REQUEST,     /* first request, or CONNECT after BIND */
	S_RESOLVING,
	S_CONNECTING,
	S_POOL_WAIT, /* every source suspended; waiting for the earliest expiry */
	S_RELAY,
	S_CLOSING,
};

/* An IPv4 or IPv6 socket address, in 28 bytes rather than
 * sockaddr_storage's 128 (this is per connection). */
union session_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/* One outbound connection try; freed in its handle's close callback. */
struct attempt {
	uv_tcp_t tcp;
	uv_connect_t req;
	struct session *s;
	bool via_proxy;	     /* connected to a source's upstream SOCKS5 proxy */
	bool handshaking;    /* upstream handshake under way */
	struct upstream *up; /* freed in the close callback (upstream.h) */
};

/* One direction of the relay: bytes read from `from` are written to `to`. */
struct half {
	struct session *s;
	uv_stream_t *from;
	uv_stream_t *to;
	bool eof;	      /* `from` said EOF */
	bool writing;	      /* a uv_write of the remainder is pending on `to` */
	bool shut;	      /* shutdown of `to` done */
	bool shutting;	      /* shutdown of `to` pending */
	uint64_t bytes;	      /* read from `from` */
	uint64_t progress_ms; /* writing: when the pending bytes last went down */
	size_t queued;	      /* writing: `to`'s write queue size then (splice: bytes
				 written to `to` then) */
	uv_shutdown_t shut_req;
};

/* A write of bytes the kernel did not take at once (handshake reply or
 * relay remainder). */
struct wreq {
	uv_write_t req;
	struct half *half; /* NULL for handshake replies */
	struct session *s;
	size_t len;
	char data[];
};

/* What only the handshake and the connect phase need. It is freed when the
 * relay starts, so an established connection holds just the session and
 * its outbound handle. */
struct session_hs {
	struct session *s;
	uv_getaddrinfo_t gai;
	uv_work_t auth_work;
	struct sockaddr_storage local; /* source=same: the address the client reached */

	uint8_t hs[SESSION_HS_BUF];
	size_t hs_len;
	size_t hs_off;

	bool auth_ok;		  /* result of the slow check */
	struct authq_entry authq; /* place in the password-check queue */
	char user[256];
	char pass[256];
	uint8_t plen;

	struct socks5_request req;
	bool adhoc; /* BIND to an unlisted address, bind_unlisted = allow */
	struct sockaddr_storage adhoc_addr;

	union session_addr dests[SESSION_MAX_DESTS];
	size_t n_dests;
	size_t dest_i;
	struct pool_tried tried;
	uint8_t last_rep; /* SOCKS5_REP_* to answer when no destination is left */
	uint64_t wait_deadline;
	bool client_eof;     /* client half-closed before the relay began */
	bool saw_candidate;  /* some source could have served the request */
	bool saw_busy;	     /* some source was skipped for its cap */
	uint64_t soonest_ms; /* earliest return of a suspended or capped source */
};

struct session {
	struct session *prev, *next;
	struct proxy *px;
	struct proxy_gen *gen;
	uint64_t id;
	enum session_state state;
	unsigned refs;
	uv_tcp_t client;
	uv_timer_t timer;
	struct attempt *out;
	struct session_hs *h; /* NULL once relaying */
	bool client_counted;
	bool authed;
	bool bound; /* a BIND was answered */
	bool acquired;
	bool spliced; /* relaying with splice(2): `sp` runs, the handles do not read */
	union session_addr peer;
	char peer_str[64];
	struct listener *l;    /* outlives every session */
	const char *user_name; /* the authenticated user, in gen->conf */
	int user;	       /* its conf index, -1 none */

	size_t pool;		 /* conf pool index this request draws from */
	int pinned;		 /* conf source index chosen by BIND or source=same, -1 none */
	struct pool_source *src; /* source of the current attempt */
	const struct conf_source *cs;
	uint64_t started_ms;
	uint64_t last_active_ms;
	char dest_str[SOCKS5_ADDR_STRLEN];

	enum proxy_result result;
	uint64_t accepted_ns; /* uv_hrtime() at accept */
	uint64_t request_ns;  /* uv_hrtime() when the CONNECT was parsed */

	struct half up;		/* client -> outbound */
	struct half down;	/* outbound -> client */
	struct splice_relay sp; /* sock 0 = client, sock 1 = outbound */
};

/* session.c */
void session_close(struct session *s, bool reset);
void session_unref(struct session *s);
/* Close `h` with an RST when `reset` and possible, else plainly. */
void session_tcp_close(uv_tcp_t *h, bool reset, uv_close_cb cb);
/* Write a whole handshake reply in one go (Exim reads each reply with one
 * read of exactly its length). @return 0 or a libuv error. */
int session_send(struct session *s, const void *data, size_t len);
/* Answer the request with `rep` (SOCKS5_REP_*), then close. */
void session_reply(struct session *s, uint8_t rep, const struct sockaddr *bnd);
void session_timer_arm(struct session *s, uint64_t ms);
uint64_t session_now(const struct session *s);
/* Free the handshake state (wiping the password first); NULL is a no-op. */
void session_hs_free(struct session *s);
/* Objects of the per-connection slabs. @return NULL when out of memory. */
struct attempt *session_attempt_alloc(struct session *s);
void session_attempt_free(struct session *s, struct attempt *a);

/* handshake.c */
/* Start reading the greeting. @return 0 or a libuv error. */
int handshake_start(struct session *s);
/* Leave the password-check queue if waiting in it (a running check cannot
 * be stopped: it finds S_CLOSING when it returns). */
void handshake_auth_unqueue(struct session *s);
/* The session timer fired during the handshake. */
void handshake_on_timeout(struct session *s);

/* attempt.c */
/* The request is a CONNECT: resolve, then try sources and destinations. */
void attempt_begin(struct session *s);
/* Abandon the current attempt, if any. */
void attempt_close(struct session *s, bool reset);
/* The session timer fired while connecting (connect_timeout) or waiting
 * for a suspended pool (POOL_WAIT). */
void attempt_on_timer(struct session *s);
/* Give back a picked source (a pinned one is held to the end). */
void attempt_src_drop(struct session *s);

/* relay.c */
/* Answer success and start relaying. `bnd` is the address to report
 * (NULL: the outbound socket's own); `extra` are destination bytes that
 * arrived with an upstream proxy's reply. */
void relay_start(struct session *s, const struct sockaddr *bnd, const uint8_t *extra,
		 size_t extra_len);
/* The session timer fired while relaying: idle and stall limits. */
void relay_on_timer(struct session *s);
/* The session is closing: stop a splice relay before its handles close. */
void relay_stop(struct session *s);

#endif
