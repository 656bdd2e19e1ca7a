/* splice: relay bytes between two TCP sockets with splice(2), socket ->
 * pipe -> socket, without copying them through user space
 * (`relay = splice`, SPEC 2 and 7).
 *
 * Internal to proxy/. One `struct splice_loop` per event loop owns:
 * - a private epoll set, watched by libuv through one uv_poll_t on its fd.
 *   Each relayed socket is added to it once, edge-triggered, for reading
 *   and writing, and never modified: backpressure and half-close cost no
 *   epoll_ctl. (libuv cannot watch one fd with two handles, and uv_poll_start
 *   re-registers the fd on every change of interest.)
 * - a small pool of pipes. A direction takes a pipe when bytes arrive and
 *   gives it back as soon as the pipe is empty again, so an idle relayed
 *   connection holds only its two sockets. One pipe is made at start and
 *   never closed: when no fd is left for a new pipe, busy directions wait
 *   for one that another direction gives back, instead of failing.
 *
 * A `struct splice_relay` joins two connected, non-blocking sockets. While it
 * runs, libuv must not watch them: the owner has stopped reading on their
 * uv_tcp_t handles and has no write or shutdown pending on them. The owner
 * keeps the handles (and so the fds) and closes them after the relay ended or
 * was stopped; closing an fd drops it from the private epoll set.
 *
 * Directions: dir[0] moves sock 0 -> sock 1, dir[1] sock 1 -> sock 0. EOF on
 * one side is passed on as shutdown(SHUT_WR) on the other once the pipe is
 * empty; a reset or an error on either side ends the relay with a negative
 * errno, which the owner passes on as a reset. Between the two sockets at
 * most one pipe's worth of bytes per direction is held (backpressure).
 *
 * Everything runs on the loop thread.
 */
#ifndef SOCKPOOL_SPLICE_H
#define SOCKPOOL_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Pipe size asked for with F_SETPIPE_SZ (the kernel default is 64 KiB;
 * larger pipes mean fewer system calls and wake-ups per byte), as long as
 * the loop's pipes stay within SPLICE_PIPE_BUDGET: the kernel charges pipe
 * capacity to the user (fs.pipe-user-pages-soft, 64 MiB by default) and past
 * that gives an unprivileged user's new pipes 2 pages only. Beyond the budget
 * pipes keep the kernel's default size. */
#define SPLICE_PIPE_SIZE   (1024 * 1024)
#define SPLICE_PIPE_BUDGET (32u * 1024 * 1024)
/* Empty pipes kept for reuse; more are closed when given back. */
#define SPLICE_POOL_MAX 32

struct splice_loop;
struct splice_relay;
struct splice_pipe;

/* Called when the relay has ended: status 0 when both directions saw EOF
 * and passed it on; -errno after a reset or an error (pass it on as a
 * reset); SPLICE_UNSUPPORTED when splice(2) refused these sockets before a
 * byte was moved (nothing was lost: the owner may relay them by copying).
 * The relay is stopped when this runs; the owner closes the sockets (after
 * SPLICE_UNSUPPORTED they are out of the epoll set, ready for other use). */
typedef void (*splice_end_cb)(struct splice_relay *r, int status);
/* Called after `n` bytes were read from the source of direction `dir`
 * (0 or 1). It must not stop the relay. */
typedef void (*splice_moved_cb)(struct splice_relay *r, int dir, size_t n);

#define SPLICE_UNSUPPORTED (-4096)

/* Fields are private; the struct is public so that owners can embed it. */
struct splice_sock {
	int fd;
	bool readable; /* an edge said so and no read has seen EAGAIN since */
	bool writable;
};

struct splice_dir {
	struct splice_pipe *pipe; /* NULL while idle */
	size_t in_pipe;		  /* bytes in the pipe */
	uint64_t bytes;		  /* read from the source */
	uint64_t written;	  /* written to the sink */
	bool eof;		  /* the source said EOF */
	bool shut;		  /* shutdown(SHUT_WR) of the sink done */
};

struct splice_relay {
	struct splice_loop *sl;
	struct splice_sock sock[2];
	struct splice_dir dir[2];
	splice_end_cb on_end;
	splice_moved_cb on_moved;
	void *data;			/* the owner's */
	struct splice_relay *wait_next; /* in the loop's list of pipe waiters */
	bool running;
	bool waiting;
};

/* Make the per-loop state: the private epoll set and its uv_poll_t, a
 * uv_timer_t, the pipe pool with its reserve pipe, an fd on /dev/null (5 fds
 * in all). `pipe_size` in bytes (0: SPLICE_PIPE_SIZE). It also proves once
 * that splice(2) works here, on a loopback TCP pair.
 * @return 0; -ENOSYS, -EINVAL or -EOPNOTSUPP when splice does not work here
 *         (use copy); or another -errno (-EMFILE...: try again later); *out
 *         is set only on 0. */
int splice_loop_new(uv_loop_t *loop, size_t pipe_size, struct splice_loop **out);

/* Close the handles and every pooled pipe; the struct is freed in the last
 * close callback. No relay may be running. NULL is a no-op. */
void splice_loop_close(struct splice_loop *sl);

/* Pipes open now: in use by busy directions, and pooled. */
size_t splice_loop_pipes_in_use(const struct splice_loop *sl);
size_t splice_loop_pipes_pooled(const struct splice_loop *sl);

/* Start relaying between fd0 and fd1 (connected TCP sockets, O_NONBLOCK).
 * `dir0_eof`: sock 0 already said EOF (a client that half-closed right
 * behind its request), so dir[0] passes it on at once. `on_end` and `data`
 * are the owner's; `on_moved` may be NULL. *r must stay valid until both
 * fds are closed and the loop has finished its current poll phase (as it
 * does when *r is freed in the close callback of a handle).
 * @return 0, or -errno (epoll_ctl failed: nothing is registered). */
int splice_relay_start(struct splice_loop *sl, struct splice_relay *r, int fd0, int fd1,
		       bool dir0_eof, splice_end_cb on_end, splice_moved_cb on_moved, void *data);

/* Stop a running relay (idle timeout, shutdown): no callback runs after
 * this. Pipes holding bytes are closed, empty ones go back to the pool.
 * `keep_fds`: the owner goes on using the fds (they are removed from the
 * epoll set); otherwise it must close both of them before the loop polls
 * again. A stopped relay is a no-op. */
void splice_relay_stop(struct splice_relay *r, bool keep_fds);

/* Bytes read from the source of `dir` but not yet written to its sink. */
size_t splice_relay_pending(const struct splice_relay *r, int dir);

#endif
