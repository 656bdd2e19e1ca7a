/* Unit tests for proxy/workers.c: real threads and loops. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "workers.h"

#define N 3

/* What one worker saw; written on its thread, read by the test after
 * workers_free() joined it (or under `mu`). */
struct seen {
	uv_timer_t keepalive; /* the worker's own handle, like a listener */
	bool open;
	pthread_t thread;
	uv_loop_t *loop;
	unsigned cmds[8];
	unsigned n_cmds;
	unsigned all; /* every bit delivered */
};

struct fixture {
	uv_loop_t main_loop;
	struct workers *ws;
	struct seen seen[N];
	int fail_index; /* this worker's start fails, -1 none */
	uv_mutex_t mu;
	uv_cond_t cond;
	unsigned reloads; /* workers that have seen RELOAD */
	bool done;
	pthread_t main_thread;
};

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

static int on_start(struct worker *w, void *ctx)
{
	struct fixture *f = ctx;
	struct seen *s = &f->seen[worker_index(w)];

	s->thread = pthread_self();
	s->loop = worker_loop(w);
	if ((int)worker_index(w) == f->fail_index)
		return -EADDRINUSE;
	uv_timer_init(worker_loop(w), &s->keepalive);
	uv_timer_start(&s->keepalive, on_tick, 5, 5);
	s->open = true;
	return 0;
}

static void on_command(struct worker *w, unsigned cmds, void *ctx)
{
	struct fixture *f = ctx;
	struct seen *s = &f->seen[worker_index(w)];

	s->all |= cmds;
	if (s->n_cmds < 8)
		s->cmds[s->n_cmds++] = cmds;
	if (cmds & WORKER_CMD_RELOAD) {
		uv_mutex_lock(&f->mu);
		f->reloads++;
		uv_cond_broadcast(&f->cond);
		uv_mutex_unlock(&f->mu);
	}
	if ((cmds & (WORKER_CMD_DRAIN | WORKER_CMD_SHUTDOWN)) && s->open) {
		s->open = false;
		uv_close((uv_handle_t *)&s->keepalive, NULL);
	}
}

static void on_done(struct workers *ws, void *ctx)
{
	struct fixture *f = ctx;

	assert_ptr_equal(ws, f->ws);
	assert_true(pthread_equal(pthread_self(), f->main_thread));
	f->done = true;
}

static const struct workers_ops ops = {on_start, on_command, on_done};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);

	if (!f)
		return -1;
	uv_loop_init(&f->main_loop);
	uv_mutex_init(&f->mu);
	uv_cond_init(&f->cond);
	f->fail_index = -1;
	f->main_thread = pthread_self();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = uv_loop_close(&f->main_loop);

	uv_cond_destroy(&f->cond);
	uv_mutex_destroy(&f->mu);
	free(f);
	return rc == 0 ? 0 : -1;
}

static void wait_reloads(struct fixture *f, unsigned n)
{
	uint64_t deadline = uv_hrtime() + 5000000000ull;

	uv_mutex_lock(&f->mu);
	while (f->reloads < n && uv_hrtime() < deadline)
		uv_cond_timedwait(&f->cond, &f->mu, 100000000ull);
	uv_mutex_unlock(&f->mu);
}

static void test_workers_commands_reach_every_thread_then_drain_ends_them(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(workers_start(&f->main_loop, N, &ops, f, &f->ws), 0);
	assert_int_equal(workers_count(f->ws), N);
	assert_null(workers_at(f->ws, N));
	assert_int_equal(workers_post(f->ws, WORKER_CMD_RELOAD), 0);
	wait_reloads(f, N);
	assert_int_equal(f->reloads, N);
	/* A paused worker (no listener open) is still alive for its mailbox:
	 * only DRAIN lets the loop end. */
	assert_int_equal(workers_post(f->ws, WORKER_CMD_DRAIN), 0);
	assert_int_equal(uv_run(&f->main_loop, UV_RUN_DEFAULT), 0);
	assert_true(f->done);
	assert_int_equal(workers_post(f->ws, WORKER_CMD_RELOAD), -ESRCH);
	assert_int_equal(worker_post(workers_at(f->ws, 0), WORKER_CMD_RELOAD), -ESRCH);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(worker_loop_status(workers_at(f->ws, i)), 0);
	workers_free(f->ws);

	for (unsigned i = 0; i < N; i++) {
		struct seen *s = &f->seen[i];
		assert_false(pthread_equal(s->thread, f->main_thread));
		for (unsigned j = 0; j < i; j++) {
			assert_false(pthread_equal(s->thread, f->seen[j].thread));
			assert_ptr_not_equal(s->loop, f->seen[j].loop);
		}
		assert_int_equal(s->n_cmds, 2);
		assert_int_equal(s->cmds[0], WORKER_CMD_RELOAD);
		assert_int_equal(s->cmds[1], WORKER_CMD_DRAIN);
	}
}

/* Posts made before a worker wakes up arrive together, none lost. */
static void test_workers_posts_coalesce(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(workers_start(&f->main_loop, 1, &ops, f, &f->ws), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(worker_post(workers_at(f->ws, 0),
					     i % 2 ? WORKER_CMD_LISTENERS : WORKER_CMD_RELOAD),
				 0);
	wait_reloads(f, 1);
	assert_int_equal(workers_post(f->ws, WORKER_CMD_SHUTDOWN), 0);
	uv_run(&f->main_loop, UV_RUN_DEFAULT);
	assert_true(f->done);
	workers_free(f->ws);
	for (unsigned i = 0; i < f->seen[0].n_cmds; i++)
		assert_int_not_equal(f->seen[0].cmds[i], 0);
	assert_int_equal(f->seen[0].all,
			 WORKER_CMD_RELOAD | WORKER_CMD_LISTENERS | WORKER_CMD_SHUTDOWN);
}

static void test_workers_start_failure_stops_the_others(void **state)
{
	struct fixture *f = *state;
	struct workers *ws = NULL;

	f->fail_index = 1;
	assert_int_equal(workers_start(&f->main_loop, N, &ops, f, &ws), -EADDRINUSE);
	assert_null(ws);
	/* The workers that did start were shut down and joined. */
	assert_int_equal(f->seen[0].cmds[0], WORKER_CMD_SHUTDOWN);
	assert_int_equal(f->seen[2].cmds[0], WORKER_CMD_SHUTDOWN);
	assert_int_equal(f->seen[1].n_cmds, 0);
	assert_false(f->seen[0].open);
	/* What is left goes at the next turn of the main loop. */
	assert_int_equal(uv_run(&f->main_loop, UV_RUN_DEFAULT), 0);
	assert_false(f->done);
}

static void test_workers_arguments(void **state)
{
	struct fixture *f = *state;
	struct workers *ws = NULL;
	const struct workers_ops no_cmd = {on_start, NULL, NULL};

	assert_int_equal(workers_start(&f->main_loop, 0, &ops, f, &ws), -EINVAL);
	assert_int_equal(workers_start(&f->main_loop, WORKERS_MAX + 1, &ops, f, &ws), -EINVAL);
	assert_int_equal(workers_start(NULL, 1, &ops, f, &ws), -EINVAL);
	assert_int_equal(workers_start(&f->main_loop, 1, &no_cmd, f, &ws), -EINVAL);
	assert_int_equal(workers_start(&f->main_loop, 1, &ops, f, NULL), -EINVAL);
	assert_null(ws);
	assert_int_equal(workers_post(NULL, WORKER_CMD_RELOAD), -EINVAL);
	assert_int_equal(worker_post(NULL, WORKER_CMD_RELOAD), -EINVAL);
	assert_int_equal(workers_count(NULL), 0);
	workers_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_workers_commands_reach_every_thread_then_drain_ends_them, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_workers_posts_coalesce, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_workers_start_failure_stops_the_others, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_workers_arguments, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
