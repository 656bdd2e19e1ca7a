/* procstat: process_* figures from /proc/self. See procstat.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "procstat.h"

int procstat_parse_stat(const char *text, long ticks_per_s, long page_size, uint64_t boot_time_s,
			struct procstat *out)
{
	/* Fields after the command name, counted from 3 (state) as in proc(5). */
	unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
	long long rss = 0;
	const char *p = text ? strrchr(text, ')') : NULL;
	char *end;

	if (!p || !out || ticks_per_s <= 0 || page_size <= 0)
		return -EINVAL;
	p++;
	for (int field = 3; field <= 24; field++) {
		while (*p == ' ')
			p++;
		if (!*p)
			return -EINVAL;
		if (field == 3) { /* state: one letter */
			p++;
			continue;
		}
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (end == p || errno)
			return -EINVAL;
		p = end;
		switch (field) {
		case 14:
			utime = (unsigned long long)v;
			break;
		case 15:
			stime = (unsigned long long)v;
			break;
		case 22:
			start = (unsigned long long)v;
			break;
		case 23:
			vsize = (unsigned long long)v;
			break;
		case 24:
			rss = v;
			break;
		default:
			break;
		}
	}
	out->cpu_seconds = (double)(utime + stime) / (double)ticks_per_s;
	out->virtual_bytes = vsize;
	out->resident_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page_size : 0;
	out->start_time_seconds = (double)boot_time_s + (double)start / (double)ticks_per_s;
	return 0;
}

static int read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return 0;
}

static uint64_t boot_time(void)
{
	char buf[8192];
	const char *p;

	if (read_text("/proc/stat", buf, sizeof buf) < 0 || !(p = strstr(buf, "\nbtime ")))
		return 0;
	return strtoull(p + 7, NULL, 10);
}

int procstat_read(struct procstat *out)
{
	char buf[1024];
	struct rlimit rl;
	struct dirent *de;
	DIR *d;
	int fd, rc;

	memset(out, 0, sizeof *out);
	rc = read_text("/proc/self/stat", buf, sizeof buf);
	if (rc < 0)
		return rc;
	rc =
	    procstat_parse_stat(buf, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot_time(), out);
	if (rc < 0)
		return rc;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		out->max_fds = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	/* open() and fdopendir() rather than opendir(): ThreadSanitizer sees
	 * the descriptor closed in closedir() but not opened in opendir(), so
	 * it would take it for a socket a worker had under that number before
	 * (libuv closes those with a raw syscall it does not see either). */
	fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			out->open_fds++;
	/* Not counting the descriptor that reads the directory. */
	if (out->open_fds)
		out->open_fds--;
	closedir(d);
	return 0;
}
