/* notify: sd_notify(3) READY/RELOADING/STOPPING, with or without libsystemd. */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

int notify_send(const char *state)
{
	if (!state)
		return -EINVAL;
	return sd_notify(0, state);
}
#else
int notify_send(const char *state)
{
	const char *path;
	struct sockaddr_un sun;
	socklen_t sun_len;
	size_t n, len;
	ssize_t sent;
	int fd, e;

	if (!state)
		return -EINVAL;
	path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	n = strlen(path);
	/* `@name` is an abstract socket; anything else must be an absolute path. */
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof sun.sun_path)
		return -EINVAL;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, n);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	sun_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	len = strlen(state);
	sent = sendto(fd, state, len, MSG_NOSIGNAL, (const struct sockaddr *)&sun, sun_len);
	e = errno;
	close(fd);
	if (sent < 0)
		return -e;
	return (size_t)sent == len ? 1 : -EMSGSIZE;
}
#endif

int notify_ready(void)
{
	return notify_send("READY=1\nSTATUS=serving");
}

int notify_reloading(void)
{
	struct timespec ts;
	char msg[96];

	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		return -errno;
	snprintf(msg, sizeof msg, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ull +
		     (unsigned long long)ts.tv_nsec / 1000ull);
	return notify_send(msg);
}

int notify_stopping(void)
{
	return notify_send("STOPPING=1\nSTATUS=stopping");
}
