/* splice: socket -> pipe -> socket relay on a private edge-triggered epoll
 * set (see splice.h for the contract). */
#include "splice.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPLICE_EVENTS 128
#define SPLICE_PASSES 8 /* epoll_wait calls per wake-up, at most */
#define SPLICE_FLAGS  (SPLICE_F_NONBLOCK | SPLICE_F_MOVE)

struct splice_pipe {
	int rfd, wfd;
	size_t cap; /* bytes, as F_GETPIPE_SZ reports */
};

struct splice_loop {
	uv_loop_t *loop;
	uv_poll_t poll;	 /* on epfd */
	uv_timer_t kick; /* wakes pipe waiters when a pipe came back outside on_epoll */
	unsigned open_handles;
	int epfd;
	int devnull; /* where a stopped relay's unsent bytes go, so its pipe is reused */
	size_t pipe_size;
	size_t in_use;
	size_t n_free;
	bool dispatching;		/* inside on_epoll */
	struct splice_relay *wait_head; /* waiting for a pipe (no fd or memory for one) */
	struct splice_pipe *free[SPLICE_POOL_MAX];
};

static bool dir_run(struct splice_relay *r, int i);

/* Run the relays that wait for a pipe while there are pooled ones. */
static void wake_waiters(struct splice_loop *sl)
{
	while (sl->n_free > 0 && sl->wait_head) {
		struct splice_relay *r = sl->wait_head;

		sl->wait_head = r->wait_next;
		r->wait_next = NULL;
		r->waiting = false;
		if (r->running && dir_run(r, 0))
			dir_run(r, 1);
	}
}

static void on_kick(uv_timer_t *t)
{
	wake_waiters(t->data);
}

static void wait_add(struct splice_relay *r)
{
	struct splice_relay **p = &r->sl->wait_head;

	if (r->waiting)
		return;
	while (*p)
		p = &(*p)->wait_next;
	*p = r;
	r->waiting = true;
}

static void wait_del(struct splice_relay *r)
{
	struct splice_relay **p = &r->sl->wait_head;

	if (!r->waiting)
		return;
	while (*p != r)
		p = &(*p)->wait_next;
	*p = r->wait_next;
	r->wait_next = NULL;
	r->waiting = false;
}

static void pipe_close(struct splice_pipe *p)
{
	close(p->rfd);
	close(p->wfd);
	free(p);
}

static int pipe_take(struct splice_loop *sl, struct splice_pipe **out)
{
	struct splice_pipe *p;
	int fds[2];
	int sz;

	if (sl->n_free) {
		*out = sl->free[--sl->n_free];
		sl->in_use++;
		return 0;
	}
	p = malloc(sizeof *p);
	if (!p)
		return -ENOMEM;
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
		int e = -errno;
		free(p);
		return e;
	}
	p->rfd = fds[0];
	p->wfd = fds[1];
	/* Over the per-user pipe budget the kernel refuses a larger size; the
	 * default one still works. */
	if ((sl->in_use + sl->n_free + 1) * sl->pipe_size <= SPLICE_PIPE_BUDGET)
		(void)fcntl(p->wfd, F_SETPIPE_SZ, (int)sl->pipe_size);
	sz = fcntl(p->wfd, F_GETPIPE_SZ);
	p->cap = sz > 0 ? (size_t)sz : 65536;
	sl->in_use++;
	*out = p;
	return 0;
}

/* Only empty pipes may be pooled: a pipe's bytes belong to one connection.
 * `pending` bytes still in it are thrown away first. */
static void pipe_give(struct splice_loop *sl, struct splice_pipe *p, size_t pending)
{
	assert(sl->in_use > 0);
	sl->in_use--;
	while (pending > 0) {
		ssize_t n = splice(p->rfd, NULL, sl->devnull, NULL, pending, SPLICE_F_NONBLOCK);
		if (n <= 0)
			break;
		pending -= (size_t)n;
	}
	if (pending == 0 && sl->n_free < SPLICE_POOL_MAX)
		sl->free[sl->n_free++] = p;
	else
		pipe_close(p);
	if (sl->wait_head && !sl->dispatching)
		uv_timer_start(&sl->kick, on_kick, 0, 0);
}

size_t splice_loop_pipes_in_use(const struct splice_loop *sl)
{
	return sl ? sl->in_use : 0;
}

size_t splice_loop_pipes_pooled(const struct splice_loop *sl)
{
	return sl ? sl->n_free : 0;
}

static void relay_end(struct splice_relay *r, int status)
{
	/* After SPLICE_UNSUPPORTED the owner goes on with the same fds. */
	splice_relay_stop(r, status == SPLICE_UNSUPPORTED);
	r->on_end(r, status);
}

/* A reset that arrives behind data reads as EOF with splice(2) too (the
 * kernel checks SOCK_DONE before sk_err): the pending socket error tells
 * them apart. */
static int eof_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return 0;
	return err;
}

/* Move what can be moved now in direction `i`. @return false when the relay
 * ended (on_end has run). */
static bool dir_run(struct splice_relay *r, int i)
{
	struct splice_dir *d = &r->dir[i];
	struct splice_sock *from = &r->sock[i], *to = &r->sock[1 - i];
	/* Never splice 0 bytes: that returns 0, which reads like EOF. */
	bool pipe_full = d->pipe && d->in_pipe >= d->pipe->cap;

	for (;;) {
		bool progress = false;
		ssize_t n;

		if (d->in_pipe > 0 && to->writable) {
			n = splice(d->pipe->rfd, NULL, to->fd, NULL, d->in_pipe, SPLICE_FLAGS);
			if (n > 0) {
				d->in_pipe -= (size_t)n;
				d->written += (uint64_t)n;
				pipe_full = false;
				progress = true;
			} else if (n < 0 && errno == EAGAIN) {
				to->writable = false;
			} else if (n < 0 && errno == EINTR) {
				continue;
			} else {
				relay_end(r, n < 0 ? -errno : -EPIPE);
				return false;
			}
		}
		if (!d->eof && from->readable && !pipe_full) {
			if (!d->pipe) {
				int rc = pipe_take(r->sl, &d->pipe);
				/* Out of fds or memory: wait for a pipe that another
				 * relay gives back (there is always one: the loop
				 * keeps one in reserve and never loses a pipe it
				 * could drain). */
				if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM) {
					wait_add(r);
					break;
				}
				if (rc < 0) {
					relay_end(r, rc);
					return false;
				}
			}
			n = splice(from->fd, NULL, d->pipe->wfd, NULL, d->pipe->cap - d->in_pipe,
				   SPLICE_FLAGS);
			if (n > 0) {
				d->in_pipe += (size_t)n;
				d->bytes += (uint64_t)n;
				if (r->on_moved)
					r->on_moved(r, i, (size_t)n);
				if (d->in_pipe >= d->pipe->cap)
					pipe_full = true;
				progress = true;
			} else if (n == 0) {
				int err = eof_error(from->fd);
				if (err) {
					relay_end(r, -err);
					return false;
				}
				d->eof = true;
				progress = true;
			} else if (errno == EAGAIN) {
				/* With bytes in the pipe, EAGAIN may mean that the
				 * pipe has no free slot (a slot per segment, not per
				 * byte): the socket is only known empty when the
				 * pipe is. */
				if (d->in_pipe == 0)
					from->readable = false;
				else
					pipe_full = true;
			} else if (errno == EINTR) {
				continue;
			} else if ((errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) &&
				   r->dir[0].bytes == 0 && r->dir[1].bytes == 0 && !r->dir[0].eof &&
				   !r->dir[1].eof) {
				relay_end(r, SPLICE_UNSUPPORTED);
				return false;
			} else {
				relay_end(r, -errno);
				return false;
			}
		}
		if (!progress)
			break;
	}
	if (d->pipe && d->in_pipe == 0) {
		pipe_give(r->sl, d->pipe, 0);
		d->pipe = NULL;
	}
	if (d->eof && d->in_pipe == 0 && !d->shut) {
		if (shutdown(to->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
			relay_end(r, -errno);
			return false;
		}
		d->shut = true;
		if (r->dir[1 - i].shut) {
			relay_end(r, 0);
			return false;
		}
	}
	return true;
}

/* The epoll data of a socket: its relay, with the socket's index in the low
 * bit (a relay is aligned well beyond 2). */
static uint64_t sock_key(struct splice_relay *r, int i)
{
	return (uint64_t)(uintptr_t)r | (uint64_t)i;
}

static void dispatch(struct epoll_event *evs, int n)
{
	for (int k = 0; k < n; k++) {
		struct splice_relay *r =
		    (struct splice_relay *)(uintptr_t)(evs[k].data.u64 & ~1ull);
		int i = (int)(evs[k].data.u64 & 1);
		uint32_t ev = evs[k].events;

		/* A relay stopped earlier in this callback is still valid memory
		 * (its owner frees it in a later close callback). */
		if (!r->running)
			continue;
		if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
			r->sock[i].readable = true;
		if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
			r->sock[i].writable = true;
		/* Both directions touch this socket: one reads it, one writes it. */
		if (dir_run(r, i))
			dir_run(r, 1 - i);
	}
}

static void on_epoll(uv_poll_t *h, int status, int events)
{
	struct splice_loop *sl = h->data;
	struct epoll_event evs[SPLICE_EVENTS];
	int n;

	(void)events;
	if (status < 0)
		return;
	sl->dispatching = true;
	/* libuv takes up to 1,024 events per poll, of which this set is one:
	 * serve as many here, or relays lag behind handshakes under load. */
	for (int pass = 0; pass < SPLICE_PASSES; pass++) {
		do {
			n = epoll_wait(sl->epfd, evs, SPLICE_EVENTS, 0);
		} while (n < 0 && errno == EINTR);
		if (n <= 0)
			break;
		dispatch(evs, n);
		if (n < SPLICE_EVENTS)
			break;
	}
	sl->dispatching = false;
	wake_waiters(sl);
}

/* One byte through socket -> pipe -> socket on a loopback TCP pair. */
static int probe(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof sa;
	int l = -1, a = -1, b = -1, p[2] = {-1, -1}, rc = 0;
	char c = 'x';

	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || a < 0 || pipe2(p, O_CLOEXEC) < 0 ||
	    bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &len) < 0 ||
	    connect(a, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    (b = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0 || write(a, &c, 1) != 1) {
		rc = -errno;
		goto out;
	}
	if (splice(b, NULL, p[1], NULL, 1, SPLICE_F_MOVE) != 1 ||
	    splice(p[0], NULL, b, NULL, 1, SPLICE_F_MOVE) != 1 || read(a, &c, 1) != 1)
		rc = errno ? -errno : -EINVAL;
out:
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
	if (l >= 0)
		close(l);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	return rc;
}

int splice_loop_new(uv_loop_t *loop, size_t pipe_size, struct splice_loop **out)
{
	struct splice_loop *sl;
	struct splice_pipe *reserve;
	int rc;

	if (!loop || !out)
		return -EINVAL;
	rc = probe();
	if (rc < 0)
		return rc;
	sl = calloc(1, sizeof *sl);
	if (!sl)
		return -ENOMEM;
	sl->loop = loop;
	sl->pipe_size = pipe_size ? pipe_size : SPLICE_PIPE_SIZE;
	sl->devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	sl->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sl->epfd < 0 || sl->devnull < 0) {
		rc = -errno;
		goto fail;
	}
	/* One pipe in reserve from the start: with every fd taken, relays
	 * still take turns on it (pipe_take, wait_add). */
	if ((rc = pipe_take(sl, &reserve)) < 0)
		goto fail;
	pipe_give(sl, reserve, 0);
	if ((rc = uv_poll_init(loop, &sl->poll, sl->epfd)) < 0)
		goto fail;
	/* Cannot fail once initialised. */
	(void)uv_timer_init(loop, &sl->kick);
	sl->poll.data = sl->kick.data = sl;
	sl->open_handles = 2;
	(void)uv_poll_start(&sl->poll, UV_READABLE, on_epoll);
	/* Neither handle alone may keep the loop alive. */
	uv_unref((uv_handle_t *)&sl->poll);
	uv_unref((uv_handle_t *)&sl->kick);
	*out = sl;
	return 0;
fail:
	while (sl->n_free)
		pipe_close(sl->free[--sl->n_free]);
	if (sl->epfd >= 0)
		close(sl->epfd);
	if (sl->devnull >= 0)
		close(sl->devnull);
	free(sl);
	return rc;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct splice_loop *sl = h->data;

	if (--sl->open_handles > 0)
		return;
	close(sl->epfd);
	close(sl->devnull);
	free(sl);
}

void splice_loop_close(struct splice_loop *sl)
{
	if (!sl)
		return;
	assert(sl->in_use == 0 && !sl->wait_head);
	while (sl->n_free)
		pipe_close(sl->free[--sl->n_free]);
	uv_close((uv_handle_t *)&sl->poll, on_handle_closed);
	uv_close((uv_handle_t *)&sl->kick, on_handle_closed);
}

int splice_relay_start(struct splice_loop *sl, struct splice_relay *r, int fd0, int fd1,
		       bool dir0_eof, splice_end_cb on_end, splice_moved_cb on_moved, void *data)
{
	struct epoll_event ev;

	if (!sl || !r || fd0 < 0 || fd1 < 0 || !on_end)
		return -EINVAL;
	memset(r, 0, sizeof *r);
	r->sl = sl;
	r->on_end = on_end;
	r->on_moved = on_moved;
	r->data = data;
	r->sock[0].fd = fd0;
	r->sock[1].fd = fd1;
	/* Readable: the ADD reports what is already queued as a first edge.
	 * Writable: a fresh connection has room, and the first EAGAIN says
	 * otherwise. */
	r->sock[0].writable = r->sock[1].writable = true;
	for (int i = 0; i < 2; i++) {
		ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
		ev.data.u64 = sock_key(r, i);
		if (epoll_ctl(sl->epfd, EPOLL_CTL_ADD, r->sock[i].fd, &ev) < 0) {
			int e = -errno;
			if (i == 1)
				epoll_ctl(sl->epfd, EPOLL_CTL_DEL, fd0, &ev);
			return e;
		}
	}
	r->running = true;
	if (dir0_eof) {
		r->dir[0].eof = true;
		/* Nothing is in the pipe: this passes the EOF on now. */
		(void)dir_run(r, 0);
	}
	return 0;
}

void splice_relay_stop(struct splice_relay *r, bool keep_fds)
{
	struct epoll_event ev = {0};

	if (!r->running)
		return;
	r->running = false;
	wait_del(r);
	for (int i = 0; i < 2; i++) {
		struct splice_dir *d = &r->dir[i];
		if (d->pipe) {
			pipe_give(r->sl, d->pipe, d->in_pipe);
			d->pipe = NULL;
		}
		if (keep_fds)
			epoll_ctl(r->sl->epfd, EPOLL_CTL_DEL, r->sock[i].fd, &ev);
	}
}

size_t splice_relay_pending(const struct splice_relay *r, int dir)
{
	return r->dir[dir & 1].in_pipe;
}
