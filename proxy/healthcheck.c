/* healthcheck: probe /healthz on admin_listen, else a SOCKS5 greeting. */
#include "healthcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for `events` on fd until deadline. @return 0, or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = now_ms();
		struct pollfd p = {.fd = fd, .events = events};
		int n;

		if (now >= deadline)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(deadline - now));
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/* An unspecified address is served on every local address: probe loopback. */
static void probe_addr(const struct sockaddr_storage *in, struct sockaddr_storage *out)
{
	*out = *in;
	if (out->ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)out;
		if (a->sin_addr.s_addr == htonl(INADDR_ANY))
			a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (out->ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
		if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
			a->sin6_addr = in6addr_loopback;
	}
}

static int connect_to(const struct sockaddr_storage *addr, uint64_t deadline, int *out)
{
	socklen_t len =
	    addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int rc = 0, soerr = 0;
	socklen_t elen = sizeof soerr;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)addr, len) < 0) {
		if (errno != EINPROGRESS) {
			rc = -errno;
			goto fail;
		}
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc < 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) < 0) {
			rc = -errno;
			goto fail;
		}
		if (soerr) {
			rc = -soerr;
			goto fail;
		}
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

static int send_all(int fd, const void *buf, size_t len, uint64_t deadline)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			int rc;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			rc = wait_fd(fd, POLLOUT, deadline);
			if (rc < 0)
				return rc;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until `want` bytes, EOF, or (want 0) a full line. @return bytes read or -errno. */
static ssize_t recv_some(int fd, char *buf, size_t cap, size_t want, uint64_t deadline)
{
	size_t got = 0;

	while (got < cap - 1) {
		ssize_t n;
		int rc;

		if (want ? got >= want : memchr(buf, '\n', got) != NULL)
			break;
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc < 0)
			return rc;
		n = recv(fd, buf + got, cap - 1 - got, 0);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	return (ssize_t)got;
}

static int probe_admin(const struct sockaddr_storage *addr, const char *where, uint64_t deadline,
		       char *msg, size_t msglen)
{
	char req[160], buf[512];
	int fd, rc, status = 0;
	ssize_t n;

	rc = connect_to(addr, deadline, &fd);
	if (rc < 0) {
		snprintf(msg, msglen, "admin %s: %s", where, strerror(-rc));
		return rc;
	}
	snprintf(req, sizeof req,
		 "GET /healthz HTTP/1.0\r\nHost: %s\r\nUser-Agent: sockpool-healthcheck\r\n\r\n",
		 where);
	rc = send_all(fd, req, strlen(req), deadline);
	n = rc < 0 ? rc : recv_some(fd, buf, sizeof buf, 0, deadline);
	close(fd);
	if (n < 0) {
		snprintf(msg, msglen, "admin %s: %s", where, strerror((int)-n));
		return (int)n;
	}
	buf[strcspn(buf, "\r\n")] = '\0';
	if (sscanf(buf, "HTTP/1.%*[01] %3d", &status) != 1 || status != 200) {
		snprintf(msg, msglen, "admin %s: GET /healthz answered '%.80s'", where,
			 n ? buf : "nothing");
		return -EPROTO;
	}
	snprintf(msg, msglen, "admin %s: GET /healthz 200", where);
	return 0;
}

static int probe_socks(const struct sockaddr_storage *addr, const char *where, uint64_t deadline,
		       char *msg, size_t msglen)
{
	/* Version 5, two methods: no authentication and username/password. */
	static const char greeting[] = {5, 2, 0, 2};
	char buf[8];
	int fd, rc;
	ssize_t n;

	rc = connect_to(addr, deadline, &fd);
	if (rc < 0) {
		snprintf(msg, msglen, "listener %s: %s", where, strerror(-rc));
		return rc;
	}
	rc = send_all(fd, greeting, sizeof greeting, deadline);
	n = rc < 0 ? rc : recv_some(fd, buf, sizeof buf, 2, deadline);
	close(fd);
	if (n < 0) {
		snprintf(msg, msglen, "listener %s: %s", where, strerror((int)-n));
		return (int)n;
	}
	if (n < 2 || buf[0] != 5 || (buf[1] != 0 && buf[1] != 2)) {
		snprintf(msg, msglen, "listener %s: no SOCKS5 method chosen (%zd bytes)", where, n);
		return -EPROTO;
	}
	snprintf(msg, msglen, "listener %s: SOCKS5 method %d", where, buf[1]);
	return 0;
}

int healthcheck_run(const struct conf *conf, uint64_t timeout_ms, char *msg, size_t msglen)
{
	struct sockaddr_storage addr;
	char where[64], scratch[2];
	uint64_t deadline = now_ms() + timeout_ms;

	if (!msg || msglen == 0) {
		msg = scratch;
		msglen = sizeof scratch;
	}
	msg[0] = '\0';
	if (!conf)
		return -EINVAL;
	if (conf->server.admin_enabled) {
		probe_addr(&conf->server.admin_listen, &addr);
		conf_addr_str((const struct sockaddr *)&addr, where, sizeof where);
		return probe_admin(&addr, where, deadline, msg, msglen);
	}
	if (conf->server.n_listens == 0) {
		snprintf(msg, msglen, "no admin_listen and no listener to probe");
		return -EINVAL;
	}
	probe_addr(&conf->server.listens[0].addr, &addr);
	conf_addr_str((const struct sockaddr *)&addr, where, sizeof where);
	return probe_socks(&addr, where, deadline, msg, msglen);
}
