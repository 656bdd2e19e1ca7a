/* relay: bytes both ways between client and destination once the request
 * is answered: backpressure, half-close, reset propagation, and the idle
 * and stall limits.
 *
 * Two ways to move the bytes (`relay = splice | copy`):
 * - splice: splice.c moves them socket -> pipe -> socket in the kernel; the
 *   uv_tcp_t handles stay open but do not read or write.
 * - copy: libuv reads into the loop-wide buffer, uv_try_write passes it on.
 *   It is also the fallback: when splice(2) does not work here, when bytes
 *   from the handshake are still queued at the switch, or when splice(2)
 *   refuses the sockets before a byte moved.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "session.h"
#include "stat.h"
#include "splice.h"

static void relay_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* Every read lands in the loop-wide buffer; only what the other side does
 * not take at once is copied (relay_forward). */
static void relay_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct session *s = h->data;

	(void)suggested;
	*buf = uv_buf_init(s->px->relay_buf, sizeof s->px->relay_buf);
}

static void relay_read_start(struct session *s, struct half *h)
{
	int rc = uv_read_start(h->from, relay_alloc, relay_read);

	if (rc == UV_EALREADY) {
		/* Still reading with the handshake's callbacks: take the stream
		 * over without stopping it, which would cost an epoll_ctl DEL
		 * and ADD. libuv looks these up on every read. */
		h->from->alloc_cb = relay_alloc;
		h->from->read_cb = relay_read;
		return;
	}
	if (rc < 0) {
		log_debug("session", "id=%llu cannot read error=\"%s\"", (unsigned long long)s->id,
			  uv_strerror(rc));
		session_close(s, true);
	}
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct half *h = container_of(req, struct half, shut_req);
	struct session *s = h->s; /* not h->from->data: `from` may be closed and freed */

	h->shutting = false;
	if (s->state != S_RELAY)
		return;
	h->shut = true;
	if (status < 0 || (s->up.shut && s->down.shut))
		session_close(s, false);
}

/* `from` is done: pass the EOF on once everything before it is written. */
static void half_finish(struct session *s, struct half *h)
{
	if (h->shut || h->shutting || h->writing)
		return;
	h->shutting = true;
	if (uv_shutdown(&h->shut_req, h->to, on_shutdown) < 0) {
		h->shutting = false;
		session_close(s, false);
	}
}

static void on_relay_written(uv_write_t *req, int status)
{
	struct wreq *w = container_of(req, struct wreq, req);
	struct session *s = w->s;
	struct half *h = w->half;

	free(w);
	if (s->state != S_RELAY)
		return;
	h->writing = false;
	if (status < 0) {
		session_close(s, true);
		return;
	}
	if (h->eof)
		half_finish(s, h);
	else
		relay_read_start(s, h);
}

/* The next time the session timer must look: the idle limit, and the stall
 * limit of each direction with a write pending. */
static void relay_timer_arm(struct session *s)
{
	const struct conf_server *srv = &s->gen->conf->server;
	uint64_t now = session_now(s), due = UINT64_MAX;
	const struct half *halves[2] = {&s->up, &s->down};

	if (srv->idle_timeout_ms)
		due = s->last_active_ms + srv->idle_timeout_ms;
	/* A splice relay says nothing when a write blocks: each direction is
	 * looked at every stall_timeout. */
	for (int i = 0; i < 2 && srv->stall_timeout_ms; i++)
		if ((halves[i]->writing || s->spliced) &&
		    halves[i]->progress_ms + srv->stall_timeout_ms < due)
			due = halves[i]->progress_ms + srv->stall_timeout_ms;
	if (due == UINT64_MAX)
		uv_timer_stop(&s->timer);
	else
		session_timer_arm(s, due > now ? due - now : 0);
}

/* Write what the kernel takes now; keep only the rest, and stop reading
 * this side until it is written (backpressure: at most one read's worth is
 * ever buffered per direction). */
static void relay_forward(struct session *s, struct half *h, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write(h->to, &b, 1);
	struct wreq *w;

	if (n == (int)len)
		return;
	if (n < 0 && n != UV_EAGAIN) {
		session_close(s, true);
		return;
	}
	if (n < 0)
		n = 0;
	w = malloc(sizeof *w + len - (size_t)n);
	if (!w) {
		session_close(s, true);
		return;
	}
	w->s = s;
	w->half = h;
	w->len = len - (size_t)n;
	memcpy(w->data, data + n, w->len);
	b = uv_buf_init(w->data, (unsigned)w->len);
	if (uv_write(&w->req, h->to, &b, 1, on_relay_written) < 0) {
		free(w);
		session_close(s, true);
		return;
	}
	h->writing = true;
	h->progress_ms = session_now(s);
	h->queued = uv_stream_get_write_queue_size(h->to);
	uv_read_stop(h->from);
	if (s->gen->conf->server.stall_timeout_ms)
		relay_timer_arm(s);
}

/* libuv 1.44 reports a reset that arrives behind data as a plain EOF
 * (POLLHUP after a short read); the socket's pending error tells them
 * apart, so that a reset is passed on as a reset. */
static bool socket_error(uv_stream_t *stream)
{
	uv_os_fd_t fd;
	int err = 0;
	socklen_t len = sizeof err;

	if (uv_fileno((uv_handle_t *)stream, &fd) < 0)
		return false;
	return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0;
}

static void count_bytes(struct session *s, struct half *h, size_t n)
{
	h->bytes += n;
	if (h == &s->up)
		stat_add(&s->px->stats.bytes_up, n);
	else
		stat_add(&s->px->stats.bytes_down, n);
}

static void relay_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct session *s = stream->data;
	struct half *h = stream == (uv_stream_t *)&s->client ? &s->up : &s->down;

	if (s->state != S_RELAY || nread == 0)
		return;
	if (nread > 0) {
		count_bytes(s, h, (size_t)nread);
		s->last_active_ms = session_now(s);
		relay_forward(s, h, buf->base, (size_t)nread);
		return;
	}
	if (nread == UV_EOF && !socket_error(stream)) {
		h->eof = true;
		uv_read_stop(stream);
		half_finish(s, h);
		return;
	}
	/* A reset (or any read error) on one side is passed on as a reset. */
	session_close(s, true);
}

/* Whether direction `h` has had unwritten data without progress for
 * stall_timeout; progress is the write queue getting shorter (splice: the
 * pipe empty, or bytes written since the last look). */
static bool half_stalled(struct session *s, struct half *h, uint64_t now)
{
	uint64_t limit = s->gen->conf->server.stall_timeout_ms;
	size_t queued;

	if (limit && s->spliced) {
		int dir = h == &s->up ? 0 : 1;
		uint64_t written = s->sp.dir[dir].written;

		if (splice_relay_pending(&s->sp, dir) == 0 || written != h->queued) {
			h->queued = (size_t)written;
			h->progress_ms = now;
			return false;
		}
		return now - h->progress_ms >= limit;
	}
	if (!limit || !h->writing)
		return false;
	queued = uv_stream_get_write_queue_size(h->to);
	if (queued < h->queued) {
		h->queued = queued;
		h->progress_ms = now;
	}
	return now - h->progress_ms >= limit;
}

void relay_on_timer(struct session *s)
{
	const struct conf_server *srv = &s->gen->conf->server;
	uint64_t now = session_now(s);

	if (half_stalled(s, &s->up, now) || half_stalled(s, &s->down, now)) {
		stat_add(&s->px->stats.stalled, 1);
		log_info("session",
			 "id=%llu client=%s dest=%s stalled: unwritten data made no progress for "
			 "stall_timeout_ms=%llu, resetting",
			 (unsigned long long)s->id, s->peer_str,
			 LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN),
			 (unsigned long long)srv->stall_timeout_ms);
		session_close(s, true);
		return;
	}
	/* The timer is not re-armed on every read; it checks on expiry how
	 * long the connection has really been quiet. */
	if (srv->idle_timeout_ms && now - s->last_active_ms >= srv->idle_timeout_ms) {
		log_debug("session", "id=%llu idle timeout", (unsigned long long)s->id);
		session_close(s, false);
		return;
	}
	relay_timer_arm(s);
}

/* Send the success reply. @return 0 or a libuv error. */
static int reply_success(struct session *s, const struct sockaddr *bnd_in)
{
	struct sockaddr_storage bnd;
	int blen = sizeof bnd, n, rc;
	uint8_t buf[SOCKS5_REPLY_MAX];

	if (bnd_in)
		memcpy(&bnd, bnd_in,
		       bnd_in->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						    : sizeof(struct sockaddr_in6));
	else if ((rc = uv_tcp_getsockname(&s->out->tcp, (struct sockaddr *)&bnd, &blen)) < 0)
		return rc;
	n = socks5_write_reply_atyp(buf, sizeof buf, SOCKS5_REP_SUCCEEDED, s->h->req.dst.atyp,
				    (struct sockaddr *)&bnd);
	if (n < 0)
		return UV_EINVAL;
	if (log_enabled(LOG_DEBUG)) {
		char b[64];
		log_debug("session", "id=%llu client=%s dest=%s source=%s bound=%s connected",
			  (unsigned long long)s->id, s->peer_str,
			  LOG_Q(s->dest_str, SOCKS5_ADDR_STRLEN), s->cs ? s->cs->name : "-",
			  conf_addr_str((struct sockaddr *)&bnd, b, sizeof b));
	}
	return session_send(s, buf, (size_t)n);
}

/* Bytes the client sent right behind its request go out first. */
static void relay_early_data(struct session *s)
{
	size_t n = s->h->hs_len - s->h->hs_off;

	if (n == 0)
		return;
	count_bytes(s, &s->up, n);
	relay_forward(s, &s->up, (char *)s->h->hs + s->h->hs_off, n);
	s->h->hs_off = s->h->hs_len;
}

static void on_spliced(struct splice_relay *r, int dir, size_t n)
{
	struct session *s = r->data;

	count_bytes(s, dir == 0 ? &s->up : &s->down, n);
	s->last_active_ms = session_now(s);
}

static void relay_copy(struct session *s, bool client_eof);

static void on_splice_end(struct splice_relay *r, int status)
{
	struct session *s = r->data;

	s->spliced = false;
	if (s->state != S_RELAY)
		return;
	if (status == SPLICE_UNSUPPORTED) {
		/* Nothing was moved yet: copy this connection, and the next. */
		if (!s->px->splice_failed)
			log_warn("relay",
				 "relay = splice: splice(2) refused a connection's sockets; "
				 "relaying by copying from now on");
		s->px->splice_failed = true;
		relay_copy(s, false);
		return;
	}
	session_close(s, status != 0);
}

/* Whether this connection can be spliced: relay = splice, splice(2) works
 * here, and no byte is queued in libuv on either side (the reply, early
 * data, an upstream proxy's extra bytes), since splice(2) would overtake
 * it. */
static bool relay_can_splice(struct session *s)
{
	struct proxy *px = s->px;
	int rc;

	if (s->gen->conf->server.relay != CONF_RELAY_SPLICE || px->splice_failed || s->up.writing ||
	    s->down.writing || uv_stream_get_write_queue_size((uv_stream_t *)&s->client) > 0 ||
	    uv_stream_get_write_queue_size((uv_stream_t *)&s->out->tcp) > 0)
		return false;
	if (px->splice)
		return true;
	rc = splice_loop_new(px->loop, 0, &px->splice);
	if (rc == -ENOSYS || rc == -EINVAL || rc == -EOPNOTSUPP) {
		log_warn("relay",
			 "relay = splice: splice(2) does not work here error=\"%s\"; "
			 "relaying by copying",
			 strerror(-rc));
		px->splice_failed = true;
	} else if (rc < 0) {
		/* Out of fds or memory now: copy this one, try again later. */
		log_debug("session", "id=%llu splice not set up error=\"%s\"; copying",
			  (unsigned long long)s->id, strerror(-rc));
	}
	return rc == 0;
}

/* @return true when the splice relay runs. */
static bool relay_splice(struct session *s, bool client_eof)
{
	uv_os_fd_t cfd, ofd;
	int rc;

	if (!relay_can_splice(s) || uv_fileno((uv_handle_t *)&s->client, &cfd) < 0 ||
	    uv_fileno((uv_handle_t *)&s->out->tcp, &ofd) < 0)
		return false;
	/* libuv must not watch these fds any more (splice.h). */
	uv_read_stop((uv_stream_t *)&s->client);
	uv_read_stop((uv_stream_t *)&s->out->tcp);
	s->up.queued = s->down.queued = 0;
	s->up.progress_ms = s->down.progress_ms = session_now(s);
	/* Set first: passing on an early EOF may end the relay inside. */
	s->spliced = true;
	rc = splice_relay_start(s->px->splice, &s->sp, cfd, ofd, client_eof, on_splice_end,
				on_spliced, s);
	if (rc < 0) {
		s->spliced = false;
		log_debug("session", "id=%llu cannot splice error=\"%s\"; copying",
			  (unsigned long long)s->id, strerror(-rc));
		return false;
	}
	return true;
}

/* Read both sides with libuv (the half already writing resumes when its
 * write is done). */
static void relay_copy(struct session *s, bool client_eof)
{
	if (!s->down.writing)
		relay_read_start(s, &s->down);
	if (s->state != S_RELAY)
		return;
	if (client_eof) {
		s->up.eof = true;
		half_finish(s, &s->up);
	} else if (!s->up.writing) {
		relay_read_start(s, &s->up);
	}
}

void relay_stop(struct session *s)
{
	if (s->spliced) {
		s->spliced = false;
		splice_relay_stop(&s->sp, false);
	}
}

void relay_start(struct session *s, const struct sockaddr *bnd, const uint8_t *extra,
		 size_t extra_len)
{
	bool client_eof;

	/* Counted before the client hears of it: with several workers the
	 * admin endpoint may be asked, on another thread, the moment the reply
	 * is out. */
	if (s->src && s->cs->kind == CONF_SOURCE_DEFAULT_ROUTE)
		poolsync_report_success(s->gen->sync, s->src, session_now(s));
	stat_add(&s->px->stats.relaying, 1);
	proxy_hist_observe(&s->px->stats.connect, (double)(uv_hrtime() - s->request_ns) / 1e6);
	if (reply_success(s, bnd) < 0) {
		stat_sub(&s->px->stats.relaying, 1);
		session_close(s, true);
		return;
	}
	s->state = S_RELAY;
	s->result = PROXY_RESULT_OK;
	s->up = (struct half){
	    .s = s, .from = (uv_stream_t *)&s->client, .to = (uv_stream_t *)&s->out->tcp};
	s->down = (struct half){
	    .s = s, .from = (uv_stream_t *)&s->out->tcp, .to = (uv_stream_t *)&s->client};
	s->last_active_ms = session_now(s);
	relay_timer_arm(s);
	/* What arrived with the upstream's reply, and what the client sent
	 * right behind its request, go out first. Nothing is read meanwhile:
	 * read callbacks only run when the loop polls again. */
	if (extra_len) {
		count_bytes(s, &s->down, extra_len);
		relay_forward(s, &s->down, (const char *)extra, extra_len);
	}
	if (s->state == S_RELAY)
		relay_early_data(s);
	if (s->state != S_RELAY)
		return;
	client_eof = s->h->client_eof;
	if (!relay_splice(s, client_eof))
		relay_copy(s, client_eof);
	if (s->state == S_RELAY && s->spliced)
		relay_timer_arm(s);
	/* Nothing of the handshake is needed any more; leftovers were copied. */
	if (s->state == S_RELAY)
		session_hs_free(s);
}
