/* workers: threads with a loop each and a command mailbox, see workers.h. */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct worker {
	struct workers *ws;
	unsigned index;
	uv_thread_t thread;
	bool thread_started;
	uv_loop_t loop;
	uv_async_t mailbox;
	uv_mutex_t mu;	  /* guards pending and alive */
	unsigned pending; /* enum worker_cmd bits not yet delivered */
	bool alive;	  /* the mailbox may be sent to */
	int start_rc;
	int loop_rc; /* uv_loop_close() */
};

struct workers {
	const struct workers_ops *ops;
	void *ctx;
	unsigned n;
	struct worker *w;
	uv_mutex_t start_mu; /* with start_cond: the threads report ops->start */
	uv_cond_t start_cond;
	unsigned started; /* threads that have run ops->start */
	uv_async_t ended; /* on the main loop: a worker's loop has ended */
	atomic_uint n_ended;
	bool done_called;
};

static void on_mail(uv_async_t *a)
{
	struct worker *w = a->data;
	unsigned cmds;

	uv_mutex_lock(&w->mu);
	cmds = w->pending;
	w->pending = 0;
	uv_mutex_unlock(&w->mu);
	if (!cmds)
		return;
	/* Past a drain the mailbox no longer holds the loop open: the worker
	 * ends when its last session does. */
	if (cmds & (WORKER_CMD_DRAIN | WORKER_CMD_SHUTDOWN))
		uv_unref((uv_handle_t *)&w->mailbox);
	w->ws->ops->command(w, cmds, w->ws->ctx);
}

static void worker_close(struct worker *w)
{
	uv_mutex_lock(&w->mu);
	w->alive = false;
	w->pending = 0;
	uv_mutex_unlock(&w->mu);
	uv_close((uv_handle_t *)&w->mailbox, NULL);
	/* Whatever close callbacks are left, mailbox's included. */
	uv_run(&w->loop, UV_RUN_DEFAULT);
	w->loop_rc = uv_loop_close(&w->loop);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	struct workers *ws = w->ws;
	char name[16];
	int rc;

	snprintf(name, sizeof name, "sockpool-w%u", w->index);
	pthread_setname_np(pthread_self(), name);
	rc = ws->ops->start(w, ws->ctx);
	uv_mutex_lock(&ws->start_mu);
	w->start_rc = rc;
	ws->started++;
	uv_cond_signal(&ws->start_cond);
	uv_mutex_unlock(&ws->start_mu);
	if (rc == 0)
		uv_run(&w->loop, UV_RUN_DEFAULT);
	worker_close(w);
	if (rc == 0) {
		atomic_fetch_add(&ws->n_ended, 1);
		uv_async_send(&ws->ended);
	}
}

static void on_ended_closed(uv_handle_t *h)
{
	struct workers *ws = h->data;

	/* Only a failed start leaves the memory to this callback. */
	if (!ws->done_called)
		workers_free(ws);
}

static void on_ended(uv_async_t *a)
{
	struct workers *ws = a->data;

	if (ws->done_called || atomic_load(&ws->n_ended) < ws->n)
		return;
	ws->done_called = true;
	uv_close((uv_handle_t *)&ws->ended, NULL);
	if (ws->ops->done)
		ws->ops->done(ws, ws->ctx);
}

static int worker_init(struct workers *ws, unsigned i)
{
	struct worker *w = &ws->w[i];
	int rc;

	w->ws = ws;
	w->index = i;
	rc = uv_loop_init(&w->loop);
	if (rc < 0)
		return rc;
	rc = uv_mutex_init(&w->mu);
	if (rc < 0)
		goto fail_loop;
	rc = uv_async_init(&w->loop, &w->mailbox, on_mail);
	if (rc < 0)
		goto fail_mu;
	w->mailbox.data = w;
	w->alive = true;
	return 0;
fail_mu:
	uv_mutex_destroy(&w->mu);
fail_loop:
	uv_loop_close(&w->loop);
	w->ws = NULL;
	return rc;
}

int workers_start(uv_loop_t *main_loop, unsigned n, const struct workers_ops *ops, void *ctx,
		  struct workers **out)
{
	struct workers *ws;
	sigset_t block, old;
	unsigned made = 0;
	int rc;

	if (!main_loop || n < 1 || n > WORKERS_MAX || !ops || !ops->start || !ops->command || !out)
		return -EINVAL;
	ws = calloc(1, sizeof *ws);
	if (!ws)
		return -ENOMEM;
	ws->w = calloc(n, sizeof *ws->w);
	if (!ws->w) {
		free(ws);
		return -ENOMEM;
	}
	ws->ops = ops;
	ws->ctx = ctx;
	ws->n = n;
	uv_mutex_init(&ws->start_mu);
	uv_cond_init(&ws->start_cond);
	rc = uv_async_init(main_loop, &ws->ended, on_ended);
	if (rc < 0) {
		uv_cond_destroy(&ws->start_cond);
		uv_mutex_destroy(&ws->start_mu);
		free(ws->w);
		free(ws);
		return rc;
	}
	ws->ended.data = ws;
	/* Before any thread runs: the ops may post through it at once. */
	*out = ws;

	/* Process signals go to the main thread's loop; the workers block
	 * them so that they never interrupt a worker's system calls. */
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (; made < n; made++) {
		rc = worker_init(ws, made);
		if (rc < 0)
			break;
		rc = uv_thread_create(&ws->w[made].thread, worker_main, &ws->w[made]);
		if (rc < 0) {
			worker_close(&ws->w[made]);
			uv_mutex_destroy(&ws->w[made].mu);
			ws->w[made].ws = NULL;
			break;
		}
		ws->w[made].thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	uv_mutex_lock(&ws->start_mu);
	while (ws->started < made)
		uv_cond_wait(&ws->start_cond, &ws->start_mu);
	uv_mutex_unlock(&ws->start_mu);
	for (unsigned i = 0; rc == 0 && i < made; i++)
		rc = ws->w[i].start_rc;
	if (rc == 0)
		return 0;
	for (unsigned i = 0; i < made; i++)
		worker_post(&ws->w[i], WORKER_CMD_SHUTDOWN);
	for (unsigned i = 0; i < made; i++) {
		uv_thread_join(&ws->w[i].thread);
		ws->w[i].thread_started = false;
	}
	*out = NULL; /* every thread has been joined */
	uv_close((uv_handle_t *)&ws->ended, on_ended_closed);
	return rc;
}

int worker_post(struct worker *w, unsigned cmds)
{
	int rc = -ESRCH;

	if (!w || !cmds)
		return -EINVAL;
	uv_mutex_lock(&w->mu);
	if (w->alive) {
		w->pending |= cmds;
		uv_async_send(&w->mailbox);
		rc = 0;
	}
	uv_mutex_unlock(&w->mu);
	return rc;
}

int workers_post(struct workers *ws, unsigned cmds)
{
	int rc = -ESRCH;

	if (!ws || !cmds)
		return -EINVAL;
	for (unsigned i = 0; i < ws->n; i++)
		if (worker_post(&ws->w[i], cmds) == 0)
			rc = 0;
	return rc;
}

unsigned workers_count(const struct workers *ws)
{
	return ws ? ws->n : 0;
}

struct worker *workers_at(struct workers *ws, unsigned i)
{
	return ws && i < ws->n ? &ws->w[i] : NULL;
}

unsigned worker_index(const struct worker *w)
{
	return w->index;
}

uv_loop_t *worker_loop(struct worker *w)
{
	return &w->loop;
}

int worker_loop_status(const struct worker *w)
{
	return w->loop_rc;
}

void workers_free(struct workers *ws)
{
	if (!ws)
		return;
	for (unsigned i = 0; i < ws->n; i++) {
		struct worker *w = &ws->w[i];
		if (w->thread_started)
			uv_thread_join(&w->thread);
		if (w->ws)
			uv_mutex_destroy(&w->mu);
	}
	uv_cond_destroy(&ws->start_cond);
	uv_mutex_destroy(&ws->start_mu);
	free(ws->w);
	free(ws);
}
