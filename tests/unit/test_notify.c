/* Unit tests for proxy/notify.c's built-in sd_notify writer (compiled here
 * without libsystemd whatever the build found): a real AF_UNIX datagram
 * socket stands in for the service manager. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"

struct manager {
	int fd;
	char path[108];
};

/* Bind a datagram socket at a fresh path (or abstract name) and point
 * $NOTIFY_SOCKET at it. */
static void manager_open(struct manager *m, int abstract)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	socklen_t len;
	struct timeval tv = {.tv_sec = 5};

	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(m->fd >= 0);
	assert_int_equal(setsockopt(m->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
	if (abstract) {
		snprintf(m->path, sizeof m->path, "@sockpool-test-notify-%d", (int)getpid());
		memcpy(sun.sun_path + 1, m->path + 1, strlen(m->path) - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(m->path));
	} else {
		char dir[] = "/tmp/sockpool-notify-XXXXXX";
		assert_non_null(mkdtemp(dir));
		snprintf(m->path, sizeof m->path, "%s/notify", dir);
		memcpy(sun.sun_path, m->path, strlen(m->path) + 1);
		len = sizeof sun;
	}
	assert_int_equal(bind(m->fd, (struct sockaddr *)&sun, len), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", m->path, 1), 0);
}

static void manager_close(struct manager *m)
{
	close(m->fd);
	if (m->path[0] == '/') {
		char *slash;
		unlink(m->path);
		slash = strrchr(m->path, '/');
		*slash = '\0';
		rmdir(m->path);
	}
	unsetenv("NOTIFY_SOCKET");
}

static void expect_datagram(struct manager *m, char *buf, size_t len)
{
	ssize_t n = recv(m->fd, buf, len - 1, 0);

	assert_true(n > 0);
	buf[n] = '\0';
}

static void test_notify_no_socket_is_a_noop(void **state)
{
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(notify_ready(), 0);
	assert_int_equal(notify_reloading(), 0);
	assert_int_equal(notify_stopping(), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
	assert_int_equal(notify_ready(), 0);
	unsetenv("NOTIFY_SOCKET");
}

static void test_notify_ready_reloading_stopping_reach_a_path_socket(void **state)
{
	struct manager m;
	char buf[256];
	struct timespec ts;
	unsigned long long now_us, sent_us;
	const char *p;

	manager_open(&m, 0);
	assert_int_equal(notify_ready(), 1);
	expect_datagram(&m, buf, sizeof buf);
	assert_non_null(strstr(buf, "READY=1"));
	assert_true(strncmp(buf, "READY=1\n", 8) == 0);

	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	now_us = (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000;
	assert_int_equal(notify_reloading(), 1);
	expect_datagram(&m, buf, sizeof buf);
	assert_true(strncmp(buf, "RELOADING=1\n", 12) == 0);
	p = strstr(buf, "\nMONOTONIC_USEC=");
	assert_non_null(p);
	sent_us = strtoull(p + 16, NULL, 10);
	/* The same clock, read a moment later. */
	assert_true(sent_us >= now_us);
	assert_true(sent_us - now_us < 5000000ull);

	assert_int_equal(notify_stopping(), 1);
	expect_datagram(&m, buf, sizeof buf);
	assert_true(strncmp(buf, "STOPPING=1\n", 11) == 0);
	manager_close(&m);
}

static void test_notify_abstract_socket(void **state)
{
	struct manager m;
	char buf[256];

	manager_open(&m, 1);
	assert_int_equal(notify_send("STATUS=hello"), 1);
	expect_datagram(&m, buf, sizeof buf);
	assert_string_equal(buf, "STATUS=hello");
	manager_close(&m);
}

static void test_notify_bad_socket_address_is_an_error(void **state)
{
	char longpath[200];

	assert_int_equal(notify_send(NULL), -EINVAL);
	assert_int_equal(setenv("NOTIFY_SOCKET", "relative/path", 1), 0);
	assert_int_equal(notify_ready(), -EINVAL);
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	assert_int_equal(setenv("NOTIFY_SOCKET", longpath, 1), 0);
	assert_int_equal(notify_ready(), -EINVAL);
	/* Nobody listens there: the error comes back, nothing is thrown. */
	assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent/sockpool-notify", 1), 0);
	assert_int_equal(notify_ready(), -ENOENT);
	unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_notify_no_socket_is_a_noop),
	    cmocka_unit_test(test_notify_ready_reloading_stopping_reach_a_path_socket),
	    cmocka_unit_test(test_notify_abstract_socket),
	    cmocka_unit_test(test_notify_bad_socket_address_is_an_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
