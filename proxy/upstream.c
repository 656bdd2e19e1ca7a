/* upstream: the SOCKS5 client handshake to a source's upstream proxy.
 * See upstream.h for the contract; the wire format is socks5.c's. */
#include <assert.h>
#include <errno.h>
#include <string.h>

#include "socks5.h"
#include "upstream.h"

/* Named states; S_IDLE is also "finished" and "cancelled": nothing of ours
 * is reading and no callback will be delivered. */
enum {
	S_IDLE = 0,
	S_METHOD,    /* greeting sent, waiting for the method reply */
	S_AUTH,	     /* RFC 1929 request sent */
	S_BIND,	     /* BIND source:0 sent */
	S_CONNECT,   /* CONNECT dest sent */
	S_FINISHING, /* result known, reading stopped, waiting for our write to complete */
};

enum { MSG_GREETING, MSG_AUTH, MSG_BIND, MSG_CONNECT };

static void on_write(uv_write_t *req, int status);

/* The password must not outlive its write. */
static void wipe_auth(struct upstream *u)
{
	if (u->writing && u->wmsg == MSG_AUTH)
		return;
	explicit_bzero(u->msg + u->msg_off[MSG_AUTH], u->msg_len[MSG_AUTH]);
}

static int send_msg(struct upstream *u, int state, uint8_t which)
{
	uv_buf_t buf = uv_buf_init((char *)u->msg + u->msg_off[which], u->msg_len[which]);
	int rc;

	assert(!u->writing && u->msg_len[which] > 0);
	u->state = state;
	u->wmsg = which;
	u->writing = true;
	u->wreq.data = u;
	rc = uv_write(&u->wreq, u->stream, &buf, 1, on_write);
	if (rc < 0)
		u->writing = false;
	return rc;
}

/* Hand the result over. Must be the last thing that touches u: cb may free it. */
static void deliver(struct upstream *u)
{
	upstream_cb cb = u->cb;

	assert(!u->writing);
	u->state = S_IDLE;
	u->stream->data = u->saved_data;
	wipe_auth(u);
	cb(u, &u->res, u->ctx);
}

static void finish(struct upstream *u, enum upstream_status status, int err, uint8_t rep,
		   const char *why)
{
	uv_read_stop(u->stream);
	u->state = S_FINISHING;
	u->res.status = status;
	u->res.err = err;
	u->res.rep = rep;
	u->res.why = why;
	if (!u->writing)
		deliver(u);
}

static void proxy_failed(struct upstream *u, int err, const char *why)
{
	finish(u, UPSTREAM_PROXY_FAILED, err, 0, why);
}

static void consume(struct upstream *u, size_t n)
{
	assert(n <= u->in_len);
	memmove(u->in, u->in + n, u->in_len - n);
	u->in_len -= n;
}

/* Send the next message, or fail if it cannot be queued. */
static void go_to(struct upstream *u, int state, uint8_t which)
{
	int rc = send_msg(u, state, which);

	if (rc < 0)
		proxy_failed(u, rc, "write to proxy failed");
}

/* CONNECT, or for a probe (no destination) the end of the handshake. */
static void connect_or_done(struct upstream *u)
{
	if (u->msg_len[MSG_CONNECT] > 0)
		go_to(u, S_CONNECT, MSG_CONNECT);
	else
		finish(u, UPSTREAM_OK, 0, 0, "proxy answered the handshake");
}

/* BIND when a source address is set, then CONNECT. */
static void after_auth(struct upstream *u)
{
	if (u->msg_len[MSG_BIND] > 0)
		go_to(u, S_BIND, MSG_BIND);
	else
		connect_or_done(u);
}

static void on_method_reply(struct upstream *u)
{
	struct socks5_method_reply r;
	size_t n = 0;
	int rc = socks5_parse_method_reply(u->in, u->in_len, &n, &r);

	if (rc == SOCKS5_NEED_MORE)
		return;
	if (rc == SOCKS5_ERROR) {
		proxy_failed(u, 0, "proxy sent a malformed method reply");
		return;
	}
	consume(u, n);
	if (r.method == SOCKS5_METHOD_PASSWORD && u->offered_password)
		go_to(u, S_AUTH, MSG_AUTH);
	else if (r.method == SOCKS5_METHOD_NONE && u->offered_none)
		after_auth(u);
	else if (r.method == SOCKS5_METHOD_UNACCEPTABLE)
		proxy_failed(u, 0, "proxy accepted none of the offered methods");
	else
		proxy_failed(u, 0, "proxy chose a method that was not offered");
}

static void on_auth_reply(struct upstream *u)
{
	struct socks5_auth_reply r;
	size_t n = 0;
	int rc = socks5_parse_auth_reply(u->in, u->in_len, &n, &r);

	if (rc == SOCKS5_NEED_MORE)
		return;
	if (rc == SOCKS5_ERROR) {
		proxy_failed(u, 0, "proxy sent a malformed auth reply");
		return;
	}
	consume(u, n);
	if (r.status != SOCKS5_AUTH_STATUS_OK)
		proxy_failed(u, 0, "proxy refused the username/password");
	else
		after_auth(u);
}

/* Parse a request reply from the input; a malformed one fails the proxy.
 * @return true with *r and *n filled once a whole, well-formed reply is in. */
static bool take_reply(struct upstream *u, struct socks5_reply *r, size_t *n, const char *malformed)
{
	int rc = socks5_parse_reply(u->in, u->in_len, n, r);

	if (rc == SOCKS5_ERROR)
		proxy_failed(u, 0, malformed);
	return rc == SOCKS5_OK;
}

static void on_bind_reply(struct upstream *u)
{
	struct socks5_reply r;
	size_t n = 0;

	if (!take_reply(u, &r, &n, "proxy sent a malformed BIND reply"))
		return;
	consume(u, n);
	if (r.rep != SOCKS5_REP_SUCCEEDED)
		finish(u, UPSTREAM_PROXY_FAILED, 0, r.rep,
		       "proxy refused to BIND the source address");
	else
		connect_or_done(u);
}

static void on_connect_reply(struct upstream *u)
{
	struct socks5_reply r;
	size_t n = 0;

	if (!take_reply(u, &r, &n, "proxy sent a malformed CONNECT reply"))
		return;
	if (r.rep != SOCKS5_REP_SUCCEEDED) {
		finish(u, UPSTREAM_DEST_FAILED, 0, r.rep,
		       "proxy's CONNECT to the destination failed");
		return;
	}
	u->res.bnd = r.bnd;
	u->res.extra = u->in + n;
	u->res.extra_len = u->in_len - n;
	finish(u, UPSTREAM_OK, 0, 0, "connected through proxy");
}

/* Act on the buffered reply to the message in flight. Every reply but the
 * last is answered by the next message, so at most one reply is acted on
 * per call; and only once our write has completed, so that one uv_write_t
 * and one buffer suffice (on_write calls back here). Nothing of u may be
 * touched after this returns: it may have delivered the result. */
static void advance(struct upstream *u)
{
	if (u->writing)
		return;
	switch (u->state) {
	case S_METHOD:
		on_method_reply(u);
		break;
	case S_AUTH:
		on_auth_reply(u);
		break;
	case S_BIND:
		on_bind_reply(u);
		break;
	case S_CONNECT:
		on_connect_reply(u);
		break;
	default:
		break;
	}
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	struct upstream *u = handle->data;

	(void)suggested;
	assert(u->state >= S_METHOD && u->state <= S_CONNECT);
	/* Length 0 when full: libuv then reports UV_ENOBUFS to on_read. */
	*buf = uv_buf_init((char *)u->in + u->in_len, (unsigned)(sizeof(u->in) - u->in_len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct upstream *u = stream->data;

	(void)buf; /* it is u->in + u->in_len, from on_alloc */
	if (u->state < S_METHOD || u->state > S_CONNECT || nread == 0)
		return;
	if (nread > 0)
		u->in_len += (size_t)nread;
	if (nread == UV_EOF)
		proxy_failed(u, UV_EOF, "proxy closed the connection during the handshake");
	else if (nread == UV_ENOBUFS)
		proxy_failed(u, 0, "proxy sent more than its reply");
	else if (nread < 0)
		proxy_failed(u, (int)nread, "read from proxy failed");
	else
		advance(u);
}

static void on_write(uv_write_t *req, int status)
{
	struct upstream *u = req->data;

	u->writing = false;
	if (u->wmsg == MSG_AUTH)
		wipe_auth(u);
	if (u->state == S_IDLE) /* cancelled: the caller may be closing the stream */
		return;
	if (u->state == S_FINISHING)
		deliver(u);
	else if (status < 0)
		proxy_failed(u, status, "write to proxy failed");
	else
		advance(u);
}

/* Encode every message now, so bad parameters fail at once and nothing in
 * *p is needed later. */
static int encode(struct upstream *u, const struct upstream_params *p)
{
	size_t off = 0;
	int n;

	u->offered_none = true;
	u->offered_password = p->username != NULL;
	n = socks5_write_greeting(u->msg, u->offered_none, u->offered_password);
	if (n < 0)
		return n;
	u->msg_off[MSG_GREETING] = 0;
	u->msg_len[MSG_GREETING] = (uint16_t)n;
	off += (size_t)n;

	u->msg_off[MSG_AUTH] = (uint16_t)off;
	if (p->username != NULL) {
		size_t ulen = strnlen(p->username, 256);
		size_t plen = p->password ? strnlen(p->password, 256) : 0;

		n = socks5_write_auth(u->msg + off, sizeof(u->msg) - off, p->username, ulen,
				      p->password, plen);
		if (n < 0)
			return n;
		u->msg_len[MSG_AUTH] = (uint16_t)n;
		off += (size_t)n;
	} else if (p->password != NULL) {
		return -EINVAL;
	}

	u->msg_off[MSG_BIND] = (uint16_t)off;
	if (p->bind_source != NULL) {
		struct socks5_addr a;

		n = socks5_addr_from_sockaddr(&a, p->bind_source);
		if (n < 0)
			return n;
		a.port = 0;
		n = socks5_write_request(u->msg + off, sizeof(u->msg) - off, SOCKS5_CMD_BIND, &a);
		if (n < 0)
			return n;
		u->msg_len[MSG_BIND] = (uint16_t)n;
		off += (size_t)n;
	}

	u->msg_off[MSG_CONNECT] = (uint16_t)off;
	if (p->dest == NULL)
		return 0; /* a probe: msg_len[MSG_CONNECT] stays 0 */
	n = socks5_write_request(u->msg + off, sizeof(u->msg) - off, SOCKS5_CMD_CONNECT, p->dest);
	if (n < 0)
		return n;
	u->msg_len[MSG_CONNECT] = (uint16_t)n;
	return 0;
}

int upstream_start(struct upstream *u, uv_stream_t *stream, const struct upstream_params *p,
		   upstream_cb cb, void *ctx)
{
	int rc;

	if (u == NULL || stream == NULL || p == NULL || cb == NULL)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	rc = encode(u, p);
	if (rc < 0)
		goto fail;
	u->stream = stream;
	u->cb = cb;
	u->ctx = ctx;
	u->res.why = "";
	u->saved_data = stream->data;
	stream->data = u;
	u->state = S_METHOD;
	rc = uv_read_start(stream, on_alloc, on_read);
	if (rc < 0)
		goto fail_data;
	rc = send_msg(u, S_METHOD, MSG_GREETING);
	if (rc < 0)
		goto fail_read;
	return 0;

fail_read:
	uv_read_stop(stream);
fail_data:
	stream->data = u->saved_data;
fail:
	u->state = S_IDLE;
	explicit_bzero(u->msg, sizeof(u->msg));
	return rc;
}

void upstream_cancel(struct upstream *u)
{
	if (u == NULL || u->state == S_IDLE)
		return;
	uv_read_stop(u->stream);
	u->stream->data = u->saved_data;
	u->state = S_IDLE;
	wipe_auth(u);
}
