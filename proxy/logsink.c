/* logsink: syslog(3) and journald for log.c (see logsink.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#ifdef HAVE_LIBSYSTEMD
/* CODE_FILE=logsink.c on every entry would say nothing. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>
#endif

#include "logsink.h"

/* One journal entry: MESSAGE, PRIORITY, identifier, component, fields. */
#define ENTRY_MAX  8192
#define FIELDS_MAX 16

void logsink__syslog_open(void)
{
	openlog("sockpool", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void logsink__syslog_close(void)
{
	closelog();
}

void logsink__syslog(int prio, const char *line)
{
	syslog(prio, "%s", line);
}

/* Lay the entry out as `NAME=value\n` lines in buf; iov[i] points at each
 * line without its newline. @return the number of lines, or -ENOBUFS. */
static int entry_build(char *buf, size_t len, struct iovec *iov, size_t iovmax, int prio,
		       const char *component, const char *line, const struct log_field *fields,
		       size_t n_fields)
{
	size_t pos = 0;
	int n = 0, k;

	k = snprintf(buf, len,
		     "MESSAGE=%s\nPRIORITY=%d\nSYSLOG_IDENTIFIER=sockpool\nSOCKPOOL_COMPONENT=%s\n",
		     line, prio, component);
	if (k < 0 || (size_t)k >= len)
		return -ENOBUFS;
	/* Split what snprintf wrote into its four lines. */
	for (size_t i = 0, start = 0; i < (size_t)k; i++) {
		if (buf[i] != '\n')
			continue;
		iov[n].iov_base = buf + start;
		iov[n].iov_len = i - start;
		n++;
		start = i + 1;
	}
	pos = (size_t)k;
	for (size_t i = 0; i < n_fields && (size_t)n < iovmax; i++) {
		k = snprintf(buf + pos, len - pos, "%s=%.*s\n", fields[i].name, (int)fields[i].len,
			     fields[i].value);
		if (k < 0 || (size_t)k >= len - pos)
			return -ENOBUFS;
		iov[n].iov_base = buf + pos;
		iov[n].iov_len = (size_t)k - 1;
		n++;
		pos += (size_t)k;
	}
	return n;
}

int logsink__journal_native(const char *path, int prio, const char *component, const char *line,
			    const struct log_field *fields, size_t n_fields)
{
	char buf[ENTRY_MAX];
	struct iovec iov[FIELDS_MAX + 4];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t total = 0;
	int n, fd, rc = 0;

	n = entry_build(buf, sizeof buf, iov, FIELDS_MAX + 4, prio, component, line, fields,
			n_fields);
	if (n < 0)
		return n;
	/* The lines lie back to back in buf, newlines included. */
	for (int i = 0; i < n; i++)
		total = (size_t)((char *)iov[i].iov_base - buf) + iov[i].iov_len + 1;
	if (strlen(path) >= sizeof sa.sun_path)
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, buf, total, MSG_NOSIGNAL, (struct sockaddr *)&sa, sizeof sa) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

bool logsink__journal_available(void)
{
	/* sd_journal_sendv() drops entries silently when the socket is missing,
	 * so both builds look for it. */
	return access(LOGSINK_JOURNAL_SOCKET, F_OK) == 0;
}

int logsink__journal(int prio, const char *component, const char *line,
		     const struct log_field *fields, size_t n_fields)
{
#ifdef HAVE_LIBSYSTEMD
	char buf[ENTRY_MAX];
	struct iovec iov[FIELDS_MAX + 4];
	int n = entry_build(buf, sizeof buf, iov, FIELDS_MAX + 4, prio, component, line, fields,
			    n_fields);

	if (n < 0)
		return n;
	return sd_journal_sendv(iov, n);
#else
	return logsink__journal_native(LOGSINK_JOURNAL_SOCKET, prio, component, line, fields,
				       n_fields);
#endif
}
