/* Unit tests for proxy/confwatch.c on a real libuv loop and a real
 * directory: an editor's rename into place, a write in place, a symlink
 * swap, unrelated files, debouncing, and stop. Every test ends asserting
 * uv_loop_close() == 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "confwatch.h"

struct fixture {
	uv_loop_t loop;
	uv_timer_t deadline;
	uv_timer_t action;
	char dir[64];
	char path[128];
	struct confwatch *w;
	int calls;
	int stop_after; /* stop the loop after this many calls */
	void (*act)(struct fixture *);
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void on_change(void *arg)
{
	struct fixture *fx = arg;

	fx->calls++;
	if (fx->calls >= fx->stop_after)
		uv_stop(&fx->loop);
}

static void on_deadline(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void on_action(uv_timer_t *t)
{
	struct fixture *fx = t->data;

	fx->act(fx);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	assert_non_null(fx);
	snprintf(fx->dir, sizeof fx->dir, "/tmp/sockpool-confwatch-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof fx->path, "%s/sockpool.ini", fx->dir);
	write_file(fx->path, "[server]\n");
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	uv_timer_init(&fx->loop, &fx->deadline);
	uv_timer_init(&fx->loop, &fx->action);
	fx->action.data = fx;
	fx->stop_after = 1;
	*state = fx;
	return 0;
}

static void rm_rf(const char *dir)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	confwatch_set(&fx->w, &fx->loop, NULL, false, NULL, NULL);
	assert_null(fx->w);
	uv_close((uv_handle_t *)&fx->deadline, NULL);
	uv_close((uv_handle_t *)&fx->action, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	rm_rf(fx->dir);
	free(fx);
	return 0;
}

/* Start the watch, do `act` a little later, run until `stop_after` calls
 * or the watchdog. */
static void run(struct fixture *fx, void (*act)(struct fixture *), uint64_t watchdog_ms)
{
	assert_int_equal(confwatch_set(&fx->w, &fx->loop, fx->path, true, on_change, fx), 0);
	assert_non_null(fx->w);
	fx->act = act;
	uv_timer_start(&fx->action, on_action, 20, 0);
	uv_timer_start(&fx->deadline, on_deadline, watchdog_ms, 0);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	uv_timer_stop(&fx->deadline);
}

static void act_rename_into_place(struct fixture *fx)
{
	char tmp[160];

	/* what vim (backupcopy=no), sed -i and most deploy tools do */
	snprintf(tmp, sizeof tmp, "%s/.sockpool.ini.tmp", fx->dir);
	write_file(tmp, "[server]\nlog_level = debug\n");
	assert_int_equal(rename(tmp, fx->path), 0);
}

static void test_rename_into_place_is_one_change(void **state)
{
	struct fixture *fx = *state;

	fx->stop_after = 2;
	run(fx, act_rename_into_place, 1000);
	assert_int_equal(fx->calls, 1);
}

static void act_write_in_place(struct fixture *fx)
{
	int fd = open(fx->path, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	/* several writes in a burst: debounced to one call */
	for (int i = 0; i < 5; i++)
		assert_int_equal(write(fd, "; more\n", 7), 7);
	close(fd);
}

static void test_write_in_place_debounced_to_one_call(void **state)
{
	struct fixture *fx = *state;

	fx->stop_after = 2;
	run(fx, act_write_in_place, 1000);
	assert_int_equal(fx->calls, 1);
}

static void act_other_file(struct fixture *fx)
{
	char other[160];

	snprintf(other, sizeof other, "%s/unrelated.txt", fx->dir);
	write_file(other, "x");
}

static void test_other_file_in_the_directory_is_no_change(void **state)
{
	struct fixture *fx = *state;

	run(fx, act_other_file, 600);
	assert_int_equal(fx->calls, 0);
}

static void act_symlink_swap(struct fixture *fx)
{
	char data2[160], link_tmp[160];

	/* a Kubernetes ConfigMap: the file is a link through ..data */
	snprintf(data2, sizeof data2, "%s/data2", fx->dir);
	assert_int_equal(mkdir(data2, 0700), 0);
	snprintf(data2, sizeof data2, "%s/data2/sockpool.ini", fx->dir);
	write_file(data2, "[server]\nlog_level = warn\n");
	snprintf(link_tmp, sizeof link_tmp, "%s/..data_tmp", fx->dir);
	assert_int_equal(symlink("data2", link_tmp), 0);
	snprintf(data2, sizeof data2, "%s/..data", fx->dir);
	assert_int_equal(rename(link_tmp, data2), 0);
}

static void test_symlink_swap_is_a_change(void **state)
{
	struct fixture *fx = *state;
	char d1[160], link[160];

	/* sockpool.ini -> ..data/sockpool.ini, ..data -> data1 */
	snprintf(d1, sizeof d1, "%s/data1", fx->dir);
	assert_int_equal(mkdir(d1, 0700), 0);
	snprintf(d1, sizeof d1, "%s/data1/sockpool.ini", fx->dir);
	write_file(d1, "[server]\n");
	snprintf(link, sizeof link, "%s/..data", fx->dir);
	assert_int_equal(symlink("data1", link), 0);
	unlink(fx->path);
	assert_int_equal(symlink("..data/sockpool.ini", fx->path), 0);
	fx->stop_after = 2;
	run(fx, act_symlink_swap, 1000);
	assert_int_equal(fx->calls, 1);
}

static void act_remove(struct fixture *fx)
{
	assert_int_equal(unlink(fx->path), 0);
}

static void test_removed_file_waits(void **state)
{
	struct fixture *fx = *state;

	run(fx, act_remove, 600);
	assert_int_equal(fx->calls, 0);
}

static void act_stop_then_write(struct fixture *fx)
{
	confwatch_set(&fx->w, &fx->loop, fx->path, false, on_change, fx);
	assert_null(fx->w);
	act_rename_into_place(fx);
}

static void test_stopped_watch_is_silent(void **state)
{
	struct fixture *fx = *state;

	run(fx, act_stop_then_write, 600);
	assert_int_equal(fx->calls, 0);
}

static void test_set_is_idempotent_and_checks_args(void **state)
{
	struct fixture *fx = *state;
	struct confwatch *first;

	assert_int_equal(confwatch_set(NULL, &fx->loop, fx->path, true, on_change, fx), -22);
	assert_int_equal(confwatch_set(&fx->w, &fx->loop, NULL, true, on_change, fx), 0);
	assert_null(fx->w);
	assert_int_equal(confwatch_set(&fx->w, &fx->loop, fx->path, true, on_change, fx), 0);
	first = fx->w;
	assert_non_null(first);
	assert_int_equal(confwatch_set(&fx->w, &fx->loop, fx->path, true, on_change, fx), 0);
	assert_ptr_equal(fx->w, first);
	/* a directory that does not exist: an error, nothing left running */
	confwatch_set(&fx->w, &fx->loop, NULL, false, NULL, NULL);
	struct confwatch *none = NULL;
	assert_true(confwatch_set(&none, &fx->loop, "/nonexistent-dir/x.ini", true, on_change, fx) <
		    0);
	assert_null(none);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_rename_into_place_is_one_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_in_place_debounced_to_one_call, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_other_file_in_the_directory_is_no_change, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_symlink_swap_is_a_change, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_removed_file_waits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stopped_watch_is_silent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_is_idempotent_and_checks_args, setup,
					    teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
