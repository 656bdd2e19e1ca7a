/* Unit tests for proxy/throttle.c on a real libuv loop: refusals counted
 * by reason and logged once, the summary written at stop, pools limited
 * apart, and every test ends asserting uv_loop_close() == 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "conf.h"
#include "log.h"
#include "throttle.h"

static struct proxy *px;
static uv_loop_t loop; /* the worker's loop the throttle runs on */
static int saved_stderr = -1, capture_fd = -1;

static int setup(void **state)
{
	struct conf_server sv;
	char err[CONF_ERR_MAX], path[] = "/tmp/sockpool-test-throttle-XXXXXX";

	(void)state;
	memset(&sv, 0, sizeof sv);
	sv.log_level = CONF_LOG_INFO;
	sv.log_timestamps_set = true;
	assert_int_equal(log_configure(&sv, err, sizeof err), 0);
	px = calloc(1, sizeof *px);
	assert_non_null(px);
	assert_int_equal(uv_loop_init(&loop), 0);
	px->loop = &loop;
	assert_int_equal(throttle_start(px), 0);
	capture_fd = mkstemp(path);
	assert_true(capture_fd >= 0);
	unlink(path);
	saved_stderr = dup(STDERR_FILENO);
	dup2(capture_fd, STDERR_FILENO);
	return 0;
}

/* What was logged since setup (stderr stays captured). */
static char *logged(void)
{
	static char buf[65536];
	ssize_t n = pread(capture_fd, buf, sizeof buf - 1, 0);

	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static int count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static int teardown(void **state)
{
	(void)state;
	throttle_stop(px);
	uv_run(px->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(px->loop), 0);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	close(capture_fd);
	free(px);
	return 0;
}

static void test_refusals_counted_and_logged_once(void **state)
{
	char *out;

	(void)state;
	for (int i = 0; i < 1000; i++)
		proxy_refused(px, PROXY_REFUSED_PER_CLIENT, "127.0.0.1:4000", 4);
	for (int i = 0; i < 10; i++)
		proxy_refused(px, PROXY_REFUSED_MAX_CONNECTIONS, "127.0.0.2:4000", 50);
	assert_int_equal(px->stats.refused[PROXY_REFUSED_PER_CLIENT], 1000);
	assert_int_equal(px->stats.refused[PROXY_REFUSED_MAX_CONNECTIONS], 10);
	assert_int_equal(px->stats.refused[PROXY_REFUSED_ALLOW], 0);
	out = logged();
	assert_int_equal(count(out, "\n"), 2);
	assert_non_null(strstr(out, "WARN server: client=127.0.0.1:4000 refused: "
				    "max_connections_per_client=4 reached\n"));
	assert_non_null(strstr(out, "WARN server: client=127.0.0.2:4000 refused: "
				    "max_connections=50 reached\n"));
	/* stopping reports what is still counted */
	throttle_stop(px);
	assert_null(px->throttle);
	out = logged();
	assert_non_null(strstr(out, "WARN server: suppressed 999 similar: clients refused: "
				    "max_connections_per_client=4 reached\n"));
	assert_non_null(strstr(out, "WARN server: suppressed 9 similar: clients refused: "
				    "max_connections=50 reached\n"));
	assert_int_equal(count(out, "\n"), 4);
}

static void test_pools_are_limited_apart(void **state)
{
	char name[16], *out;

	(void)state;
	/* each pool has its own limiter: every first line shows */
	for (int round = 0; round < 3; round++)
		for (int p = 0; p < 5; p++) {
			snprintf(name, sizeof name, "pool%d", p);
			throttle_log(px, THROTTLE_POOL_EXHAUSTED, name, LOG_WARN, "pool",
				     "pool exhausted", "pool %s exhausted pool=%s", name, name);
		}
	out = logged();
	assert_int_equal(count(out, "\n"), 5);
	for (int p = 0; p < 5; p++) {
		char line[64];
		snprintf(line, sizeof line, "WARN pool: pool pool%d exhausted pool=pool%d\n", p, p);
		assert_non_null(strstr(out, line));
	}
	throttle_stop(px);
	out = logged();
	assert_int_equal(count(out, "suppressed 2 similar: pool exhausted pool=pool"), 5);
}

static void test_accept_errors_counted(void **state)
{
	char *out;

	(void)state;
	proxy_accept_failed(px, "127.0.0.1:1080", UV_EMFILE);
	proxy_accept_failed(px, NULL, UV_EMFILE);
	proxy_accept_failed(px, "127.0.0.1:1080", UV_ECONNABORTED);
	assert_int_equal(px->stats.accept_errors, 3);
	assert_int_equal(px->stats.accept_emfile, 2);
	out = logged();
	assert_int_equal(count(out, "\n"), 1);
	assert_non_null(strstr(out,
			       "WARN server: accept failed addr=127.0.0.1:1080 error=\"too many "
			       "open files\": out of file descriptors"));
}

static void test_info_refusals_follow_the_level(void **state)
{
	(void)state;
	log_set_level(LOG_WARN);
	proxy_refused(px, PROXY_REFUSED_ALLOW, "192.0.2.1:5", 0);
	/* counted even when not logged */
	assert_int_equal(px->stats.refused[PROXY_REFUSED_ALLOW], 1);
	assert_string_equal(logged(), "");
	log_set_level(LOG_INFO);
	proxy_refused(px, PROXY_REFUSED_ALLOW, "192.0.2.1:5", 0);
	assert_string_equal(logged(), "INFO server: client=192.0.2.1:5 refused: not in allow\n");
	assert_string_equal(proxy_refusal_name(PROXY_REFUSED_ALLOW), "allow");
	assert_string_equal(proxy_refusal_name(PROXY_REFUSED_PER_CLIENT),
			    "max_connections_per_client");
	assert_string_equal(proxy_refusal_name(PROXY_REFUSED_COUNT), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_refusals_counted_and_logged_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pools_are_limited_apart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_accept_errors_counted, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_info_refusals_follow_the_level, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
