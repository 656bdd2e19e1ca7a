/* Unit tests for proxy/lsock.c: real sockets on loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lsock.h"
#include "test_addr.h"

static struct sockaddr_storage bound_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	return ss;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
	return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
					      : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static int opt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof v;

	assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

static int connect_to(const struct sockaddr_storage *ss)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t len =
	    ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (const struct sockaddr *)ss, len), 0);
	return fd;
}

/* Accept what is pending on `fd` now (the connects have completed, so the
 * kernel has queued them). @return how many. */
static int accept_all(int fd)
{
	int n = 0, c;

	while ((c = accept(fd, NULL, NULL)) >= 0) {
		close(c);
		n++;
	}
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	return n;
}

static void test_lsock_v4_options_are_set(void **state)
{
	struct sockaddr_storage a = test_addr("127.0.0.1", 0);
	struct lsock_opts o = {
	    .reuseport = true, .fastopen_qlen = 256, .nodelay = true, .keepalive_ms = 90000};
	int fd = lsock_open((struct sockaddr *)&a, &o), c, acc;
	struct pollfd pfd;

	(void)state;
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(opt_int(fd, SOL_SOCKET, SO_REUSEADDR), 1);
	assert_int_equal(opt_int(fd, SOL_SOCKET, SO_REUSEPORT), 1);
	assert_int_equal(opt_int(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
	assert_int_equal(opt_int(fd, IPPROTO_TCP, TCP_FASTOPEN), 256);
	a = bound_of(fd);
	assert_true(port_of(&a) != 0);

	/* Accepted sockets inherit NODELAY and keepalive from the listener. */
	c = connect_to(&a);
	pfd = (struct pollfd){.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	acc = accept(fd, NULL, NULL);
	assert_true(acc >= 0);
	assert_int_equal(opt_int(acc, IPPROTO_TCP, TCP_NODELAY), 1);
	assert_int_equal(opt_int(acc, SOL_SOCKET, SO_KEEPALIVE), 1);
	assert_int_equal(opt_int(acc, IPPROTO_TCP, TCP_KEEPIDLE), 90);
	close(acc);
	close(c);
	close(fd);
}

static void test_lsock_defaults_leave_options_off(void **state)
{
	struct sockaddr_storage a = test_addr("127.0.0.1", 0);
	int fd = lsock_open((struct sockaddr *)&a, NULL);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(opt_int(fd, SOL_SOCKET, SO_REUSEADDR), 1);
	assert_int_equal(opt_int(fd, SOL_SOCKET, SO_REUSEPORT), 0);
	assert_int_equal(opt_int(fd, IPPROTO_TCP, TCP_FASTOPEN), 0);
	assert_int_equal(opt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	close(fd);
}

static void test_lsock_keepalive_below_a_second_is_one_second(void **state)
{
	struct sockaddr_storage a = test_addr("127.0.0.1", 0);
	struct lsock_opts o = {.keepalive_ms = 300};
	int fd = lsock_open((struct sockaddr *)&a, &o);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(opt_int(fd, IPPROTO_TCP, TCP_KEEPIDLE), 1);
	close(fd);
}

/* Two sockets on one port: the kernel spreads connections over both. */
static void test_lsock_reuseport_group_shares_the_load(void **state)
{
	struct sockaddr_storage a = test_addr("127.0.0.1", 0), b;
	struct lsock_opts o = {.reuseport = true};
	int fd1 = lsock_open((struct sockaddr *)&a, &o), fd2, n1, n2;
	int clients[64];

	(void)state;
	assert_true(fd1 >= 0);
	a = bound_of(fd1);
	fd2 = lsock_open((struct sockaddr *)&a, &o);
	assert_true(fd2 >= 0);
	b = bound_of(fd2);
	assert_int_equal(port_of(&a), port_of(&b));
	for (int i = 0; i < 64; i++)
		clients[i] = connect_to(&a);
	n1 = accept_all(fd1);
	n2 = accept_all(fd2);
	assert_int_equal(n1 + n2, 64);
	/* Spread by a hash of the 4-tuple: 64 to one side is a 2^-63 chance. */
	assert_true(n1 > 0);
	assert_true(n2 > 0);
	for (int i = 0; i < 64; i++)
		close(clients[i]);
	close(fd1);
	close(fd2);
}

static void test_lsock_reuseport_needs_it_on_every_socket(void **state)
{
	struct sockaddr_storage a = test_addr("127.0.0.1", 0);
	struct lsock_opts on = {.reuseport = true}, off = {0};
	int fd1 = lsock_open((struct sockaddr *)&a, &on);

	(void)state;
	assert_true(fd1 >= 0);
	a = bound_of(fd1);
	assert_int_equal(lsock_open((struct sockaddr *)&a, &off), -EADDRINUSE);
	close(fd1);

	a = test_addr("127.0.0.1", 0);
	fd1 = lsock_open((struct sockaddr *)&a, &off);
	assert_true(fd1 >= 0);
	a = bound_of(fd1);
	assert_int_equal(lsock_open((struct sockaddr *)&a, &on), -EADDRINUSE);
	close(fd1);
}

/* IPV6_V6ONLY: [::]:P does not take 0.0.0.0:P away. Another process may
 * hold P on some IPv4 address by chance, so a few ports are tried; without
 * V6ONLY every one fails. */
static void test_lsock_v6_is_v6only(void **state)
{
	int fd4 = -1;

	(void)state;
	for (int tries = 0; tries < 20 && fd4 < 0; tries++) {
		struct sockaddr_storage a6 = test_addr("::", 0), a4;
		int fd6 = lsock_open((struct sockaddr *)&a6, NULL);

		if (fd6 == -EAFNOSUPPORT || fd6 == -EADDRNOTAVAIL)
			fail_msg("no IPv6 on this host: lsock_open([::]) = %d", fd6);
		assert_true(fd6 >= 0);
		assert_int_equal(opt_int(fd6, IPPROTO_IPV6, IPV6_V6ONLY), 1);
		a6 = bound_of(fd6);
		a4 = test_addr("0.0.0.0", port_of(&a6));
		fd4 = lsock_open((struct sockaddr *)&a4, NULL);
		assert_true(fd4 >= 0 || fd4 == -EADDRINUSE);
		close(fd6);
	}
	assert_true(fd4 >= 0);
	close(fd4);
}

static void test_lsock_errors(void **state)
{
	struct sockaddr_storage a = test_addr("192.0.2.1", 0); /* TEST-NET-1: not on this host */
	struct sockaddr_storage un = {.ss_family = AF_UNIX};

	(void)state;
	assert_int_equal(lsock_open((struct sockaddr *)&a, NULL), -EADDRNOTAVAIL);
	assert_int_equal(lsock_open((struct sockaddr *)&un, NULL), -EINVAL);
	assert_int_equal(lsock_open(NULL, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lsock_v4_options_are_set),
	    cmocka_unit_test(test_lsock_defaults_leave_options_off),
	    cmocka_unit_test(test_lsock_keepalive_below_a_second_is_one_second),
	    cmocka_unit_test(test_lsock_reuseport_group_shares_the_load),
	    cmocka_unit_test(test_lsock_reuseport_needs_it_on_every_socket),
	    cmocka_unit_test(test_lsock_v6_is_v6only),
	    cmocka_unit_test(test_lsock_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
