/* workers: N threads, each running its own libuv loop, told what to do
 * through a mailbox.
 *
 * Internal to proxy/. The main thread keeps the process-wide work (signals,
 * admin, address watch, pool expiry); each worker thread serves connections
 * on a loop of its own. The main thread talks to a worker only by posting
 * commands: bits of enum worker_cmd, OR-ed into the worker's pending set and
 * delivered by an uv_async_t on the worker's loop, so posting never blocks
 * and several posts before the worker wakes up arrive as one call. A command
 * carries no payload: what it refers to (the new generation, the listeners
 * to pause) is shared state the worker reads under its own lock.
 *
 * Lifetime: a worker's thread ends when its loop has nothing left to run.
 * Until it is told WORKER_CMD_DRAIN the mailbox keeps the loop alive (a
 * worker whose listeners are all paused must still hear the command that
 * reopens them); after it, the worker ends as soon as the caller's own
 * handles on its loop are closed. When every worker has ended, `done` runs
 * on the main loop.
 *
 * Thread safety: workers_post() and worker_post() from any thread; the rest
 * from the thread that called workers_start(). The ops run where each says.
 */
#ifndef SOCKPOOL_WORKERS_H
#define SOCKPOOL_WORKERS_H

#include <uv.h>

#define WORKERS_MAX 64u

struct workers;
struct worker;

enum worker_cmd {
	WORKER_CMD_RELOAD = 1u << 0,	/* another generation is current: take it */
	WORKER_CMD_LISTENERS = 1u << 1, /* on_pool_exhausted = refuse: pause or reopen listeners */
	WORKER_CMD_DRAIN = 1u << 2,	/* stop accepting, let live sessions finish */
	WORKER_CMD_SHUTDOWN = 1u << 3,	/* close every session now (implies DRAIN) */
	WORKER_CMD_ADDR_GONE = 1u << 4, /* an address left the host: move its connects */
};

struct workers_ops {
	/* Worker thread, before its loop runs: open what the worker serves on
	 * worker_loop(w). @return 0, or -errno: then every handle it opened must
	 * be closed (uv_close) before it returns, and workers_start() fails. */
	int (*start)(struct worker *w, void *ctx);
	/* Worker thread: the commands posted since the last call, never 0. */
	void (*command)(struct worker *w, unsigned cmds, void *ctx);
	/* Main loop thread: every worker's loop has ended. May be NULL. */
	void (*done)(struct workers *ws, void *ctx);
};

/* Start `n` worker threads (1..WORKERS_MAX), each with its own loop, and
 * wait until each has run ops->start. `main_loop` is the caller's loop,
 * where ops->done will run. `ops` and `ctx` must outlive workers_free().
 * *out is set before the first thread starts, so that the ops (and whatever
 * they call) may post through it from the start.
 * @return 0 and *out; or -EINVAL, -ENOMEM, a thread or loop error, or the
 *         first error an ops->start returned. On error every thread that
 *         started has been told WORKER_CMD_SHUTDOWN and joined, *out is NULL
 *         again, and what is left is released at the next turn of
 *         `main_loop`: run it. */
int workers_start(uv_loop_t *main_loop, unsigned n, const struct workers_ops *ops, void *ctx,
		  struct workers **out);

/* Post `cmds` (enum worker_cmd bits) to every worker / to one.
 * @return 0, -EINVAL (no bits), -ESRCH (worker_post: that worker has ended;
 *         workers_post: every worker has). */
int workers_post(struct workers *ws, unsigned cmds);
int worker_post(struct worker *w, unsigned cmds);

unsigned workers_count(const struct workers *ws);
/* Worker i (0-based), NULL when out of range. Valid until workers_free(). */
struct worker *workers_at(struct workers *ws, unsigned i);
unsigned worker_index(const struct worker *w);
/* The worker's loop: touch it only from the worker's own thread. */
uv_loop_t *worker_loop(struct worker *w);
/* uv_loop_close()'s answer once the worker ended: 0, or UV_EBUSY when the
 * caller left a handle open on it. */
int worker_loop_status(const struct worker *w);

/* Join the threads and release everything. Only after ops->done ran and the
 * main loop went round once more (uv_run returned). NULL is a no-op. */
void workers_free(struct workers *ws);

#endif
