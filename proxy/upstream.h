/* upstream: the client half of SOCKS5, spoken to a source's upstream proxy
 * (SPEC 4.4: sockpool -> sockpool, sockpool -> kumo-proxy).
 *
 * Internal to proxy/. The caller connects a TCP stream to
 * `socks5_proxy_server`; upstream_start() then runs, on that stream:
 *
 *   greeting -> [RFC 1929 auth] -> [BIND source:0] -> CONNECT dest
 *
 * one message at a time, each sent only after the reply to the previous one
 * (KumoMTA waits for the BIND reply; some proxies do not accept pipelining).
 *
 * No deadline of its own: the caller's connect timer covers the handshake;
 * when it fires the caller calls upstream_cancel() and counts a proxy
 * failure (SPEC 4.2, "upstream proxy ... timeout").
 *
 * Lifetime (the struct may be embedded or on the heap; the caller owns it):
 * - upstream_start() copies and encodes everything in *p: nothing p points to
 *   is used after it returns.
 * - While the handshake runs, stream->data points to u; it is put back to
 *   the caller's value before cb runs and by upstream_cancel(). Do not close
 *   the stream, or call uv_read_start/uv_read_stop on it, until cb has run or
 *   upstream_cancel() has been called.
 * - cb runs at most once, with reading stopped and no write of ours pending.
 *   From then on nothing of u is touched: u may be freed inside cb (res and
 *   res->extra point into u: copy them first), and the caller may
 *   uv_read_start with its own callbacks.
 * - After upstream_cancel() a write of ours may still be queued on the
 *   stream; its callback runs, at the latest, when the caller closes the
 *   stream. So u must stay valid until the stream's close callback.
 */
#ifndef SOCKPOOL_UPSTREAM_H
#define SOCKPOOL_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "socks5.h"

struct upstream_params {
	const char *username;		    /* NULL: offer no-auth only; else 1..255 bytes */
	const char *password;		    /* with username; NULL = empty; 0..255 bytes */
	const struct sockaddr *bind_source; /* NULL: no BIND; else BIND addr:0 (port ignored) */
	const struct socks5_addr *dest;	    /* CONNECT target, any ATYP; a DOMAIN is passed
					       through unresolved. NULL: a health probe that
					       ends with UPSTREAM_OK after the greeting, auth
					       and BIND (if any), sending no CONNECT */
};

enum upstream_status {
	UPSTREAM_OK,	       /* CONNECT succeeded: res->bnd is what the proxy reported
				  (a probe: the handshake passed; bnd is zero) */
	UPSTREAM_PROXY_FAILED, /* blame the source's proxy: EOF, reset, malformed reply,
				  every method refused (0xFF), auth refused, BIND refused */
	UPSTREAM_DEST_FAILED,  /* the proxy's CONNECT failed: pass res->rep to our client */
};

struct upstream_result {
	enum upstream_status status;
	uint8_t rep;		/* DEST_FAILED: the proxy's REP (never 0); BIND refused: its REP */
	int err;		/* PROXY_FAILED: a libuv error (UV_EOF, UV_ECONNRESET...) or 0
				   for a protocol error */
	const char *why;	/* static text for logs, never NULL */
	struct socks5_addr bnd; /* OK: the proxy's BND.ADDR/BND.PORT */
	const uint8_t *extra;	/* OK: bytes read past the CONNECT reply (a banner that came in
				   the same segment); points into the struct upstream */
	size_t extra_len;	/* forward these to the client before relaying */
};

struct upstream;
typedef void (*upstream_cb)(struct upstream *u, const struct upstream_result *res, void *ctx);

/* Largest read past the final reply that lands in res->extra; anything
 * beyond it stays in the socket for the caller's own reads. */
#define UPSTREAM_READ_MAX 512

/* Defined here so that it can be embedded; the fields are private. */
struct upstream {
	uv_stream_t *stream;
	void *saved_data; /* the caller's stream->data */
	upstream_cb cb;
	void *ctx;
	uv_write_t wreq;
	int state;
	bool writing; /* wreq is in flight */
	bool offered_none;
	bool offered_password;
	uint8_t wmsg;	     /* the message in flight or last written */
	uint16_t msg_off[4]; /* greeting, auth, BIND, CONNECT; length 0 = none */
	uint16_t msg_len[4];
	uint8_t msg[4 + SOCKS5_AUTH_MAX + 2 * SOCKS5_REQUEST_MAX];
	size_t in_len;
	uint8_t in[UPSTREAM_READ_MAX];
	struct upstream_result res;
};

/* Start the handshake on `stream`, a connected TCP stream to the proxy.
 * Reads with uv_read_start() on it and writes with uv_write(). cb is called
 * exactly once, unless upstream_cancel() is called first.
 * @return 0, or a negative error and then cb is never called and the stream
 * is as it was: -EINVAL for a bad argument (dest invalid, a username
 * of 0 or over 255 bytes, a password over 255 bytes or without
 * a username), -EAFNOSUPPORT for a bind_source neither AF_INET nor
 * AF_INET6, or the error of uv_read_start()/uv_write(). */
int upstream_start(struct upstream *u, uv_stream_t *stream, const struct upstream_params *p,
		   upstream_cb cb, void *ctx);

/* Abandon the handshake (the client went away, the caller's timer fired):
 * stops reading and restores stream->data; cb will not be called. A no-op
 * after cb has run; u must have been started successfully. The caller then
 * closes the stream and keeps u valid until its close callback (see
 * Lifetime above). */
void upstream_cancel(struct upstream *u);

#endif
