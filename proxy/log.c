/* log: targets, timestamps and the access log (see log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "logsink.h"

/* A formatted line before and after escaping; escaping may grow it. */
#define LINE_RAW     4096
#define LINE_MAX_OUT 4096

enum target { T_STDERR, T_SYSLOG, T_JOURNAL };
enum access_mode { A_OFF, A_LOG, A_FILE };

static atomic_int log_level_now = LOG_INFO;
static atomic_int log_target_now = T_STDERR;
static atomic_int timestamps_now = -1; /* -1: not configured yet, decided on first use */
static atomic_int access_mode_now = A_OFF;
static atomic_int access_fd = -1;
static char *access_path; /* loop thread only */

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const int level_prio[] = {3, 4, 6, 7};

void log_set_level(enum log_level level)
{
	atomic_store(&log_level_now, (int)level);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_level_now);
}

bool log_access_enabled(void)
{
	return atomic_load(&access_mode_now) != A_OFF;
}

bool log_stderr_is_journal(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	if (!env || sscanf(env, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static bool timestamps_on(void)
{
	int t = atomic_load(&timestamps_now);

	if (t < 0) {
		t = !log_stderr_is_journal();
		atomic_store(&timestamps_now, t);
	}
	return t;
}

size_t log_timestamp(char *buf, size_t len, long long wall_ms)
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;
	long off;
	int k;

	if (!localtime_r(&secs, &tm))
		return 0;
	off = tm.tm_gmtoff / 60;
	k = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02ld:%02ld", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     (int)(wall_ms % 1000), off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
	if (k < 0 || (size_t)k >= len) {
		if (len)
			buf[0] = '\0';
		return 0;
	}
	return (size_t)k;
}

static long long wall_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* `[TS ]LEVEL component: ` into out; @return its length. */
static size_t line_head(char *out, size_t len, bool ts, enum log_level level, const char *component)
{
	size_t n = 0;
	int k;

	if (ts) {
		n = log_timestamp(out, len, wall_now_ms());
		if (n)
			out[n++] = ' ';
	}
	k = snprintf(out + n, len - n, "%s %s: ", level_names[level], component);
	return n + (k < 0 ? 0 : (size_t)k);
}

/* Format into raw, with `...` where vsnprintf had to cut. @return length. */
static size_t format_raw(char *raw, size_t len, const char *fmt, va_list ap)
{
	int k = vsnprintf(raw, len, fmt, ap);

	if (k < 0)
		return 0;
	if ((size_t)k >= len) {
		memcpy(raw + len - 4, "...", 4);
		return len - 1;
	}
	return (size_t)k;
}

static void write_fd(int fd, const char *buf, size_t n)
{
	/* stderr may be a pipe that is gone; a lost log line must not kill us. */
	if (write(fd, buf, n) < 0)
		return;
}

/* Write one finished message (already sanitised) to the log target. */
static void emit(enum log_level level, const char *component, const char *msg, size_t msglen)
{
	char line[LINE_MAX_OUT + 128];
	int target = atomic_load(&log_target_now);
	size_t n;

	if (target == T_JOURNAL) {
		struct log_field fields[8];
		size_t nf = log_journal_fields(msg, fields, 8);
		n = line_head(line, sizeof line, false, level, component);
		memcpy(line + n, msg, msglen + 1);
		if (logsink__journal(level_prio[level], component, line, fields, nf) == 0)
			return;
		/* No journal after all: the line must not be lost. */
	} else if (target == T_SYSLOG) {
		n = line_head(line, sizeof line, false, level, component);
		memcpy(line + n, msg, msglen + 1);
		logsink__syslog(level_prio[level], line);
		return;
	}
	n = line_head(line, sizeof line, timestamps_on(), level, component);
	memcpy(line + n, msg, msglen);
	n += msglen;
	line[n++] = '\n';
	write_fd(STDERR_FILENO, line, n);
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
	char raw[LINE_RAW], msg[LINE_MAX_OUT];
	size_t n;
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	n = format_raw(raw, sizeof raw, fmt, ap);
	va_end(ap);
	n = log_sanitize(msg, sizeof msg, raw, n);
	emit(level, component, msg, n);
}

void log_access(const char *fmt, ...)
{
	char raw[LINE_RAW], msg[LINE_MAX_OUT], line[LINE_MAX_OUT + 128];
	int mode = atomic_load(&access_mode_now);
	size_t n, h;
	va_list ap;

	if (mode == A_OFF)
		return;
	va_start(ap, fmt);
	n = format_raw(raw, sizeof raw, fmt, ap);
	va_end(ap);
	n = log_sanitize(msg, sizeof msg, raw, n);
	if (mode == A_LOG) {
		emit(LOG_INFO, "access", msg, n);
		return;
	}
	/* A file of its own always carries times: it has no other clock. */
	h = line_head(line, sizeof line, true, LOG_INFO, "access");
	memcpy(line + h, msg, n);
	h += n;
	line[h++] = '\n';
	write_fd(atomic_load(&access_fd), line, h);
}

static int open_access(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);

	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "access_log: cannot open %s: %s", path, strerror(e));
		return -e;
	}
	return fd;
}

/* Put `fd` in place of the access log descriptor. A descriptor already in
 * use keeps its number (dup2 swaps the file under it atomically), so a
 * writer on another thread never sees it closed. */
static void access_install(int fd)
{
	int old = atomic_load(&access_fd);

	if (old < 0) {
		atomic_store(&access_fd, fd);
		return;
	}
	if (dup2(fd, old) < 0) {
		atomic_store(&access_fd, fd);
		close(old);
		return;
	}
	close(fd);
}

int log_configure(const struct conf_server *sv, char *err, size_t errlen)
{
	int target = T_STDERR, old_target = atomic_load(&log_target_now);
	int mode = !sv->access_log ? A_OFF : sv->access_log_file ? A_FILE : A_LOG;
	char *path = NULL;
	int fd = -1;
	bool journal_missing = false;

	if (err && errlen)
		err[0] = '\0';
	if (mode == A_FILE && (!access_path || strcmp(access_path, sv->access_log_file) != 0 ||
			       atomic_load(&access_fd) < 0)) {
		path = strdup(sv->access_log_file);
		if (!path) {
			snprintf(err, errlen, "access_log: out of memory");
			return -ENOMEM;
		}
		fd = open_access(path, err, errlen);
		if (fd < 0) {
			free(path);
			return fd;
		}
	}

	/* From here on nothing fails. */
	if (sv->log_target == CONF_LOG_TARGET_SYSLOG) {
		target = T_SYSLOG;
	} else if (sv->log_target == CONF_LOG_TARGET_JOURNALD) {
		target = T_JOURNAL;
		if (!logsink__journal_available()) {
			target = T_STDERR;
			journal_missing = true;
		}
	}
	if (target == T_SYSLOG && old_target != T_SYSLOG)
		logsink__syslog_open();
	atomic_store(&log_target_now, target);
	if (old_target == T_SYSLOG && target != T_SYSLOG)
		logsink__syslog_close();
	atomic_store(&timestamps_now,
		     sv->log_timestamps_set ? sv->log_timestamps : !log_stderr_is_journal());
	log_set_level((enum log_level)sv->log_level);

	if (fd >= 0) {
		access_install(fd);
		free(access_path);
		access_path = path;
	}
	atomic_store(&access_mode_now, mode);
	if (mode != A_FILE && atomic_load(&access_fd) >= 0) {
		int old = atomic_exchange(&access_fd, -1);
		close(old);
		free(access_path);
		access_path = NULL;
	}
	if (journal_missing)
		log_warn("main",
			 "log_target=journald: no journal socket at %s; logging to stderr instead",
			 LOGSINK_JOURNAL_SOCKET);
	return 0;
}

int log_reopen(void)
{
	char err[CONF_ERR_MAX];
	int fd;

	if (!access_path || atomic_load(&access_mode_now) != A_FILE)
		return 0;
	fd = open_access(access_path, err, sizeof err);
	if (fd < 0) {
		log_error("main", "%s; still writing to the old file", err);
		return fd;
	}
	access_install(fd);
	log_info("main", "access log reopened path=%s", access_path);
	return 0;
}
