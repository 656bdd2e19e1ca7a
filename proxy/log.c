#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static atomic_int log_level_now = LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void log_set_level(enum log_level level)
{
	atomic_store(&log_level_now, (int)level);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_level_now);
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
	char line[1024];
	size_t n;
	int k;
	va_list ap;

	if (!log_enabled(level))
		return;
	k = snprintf(line, sizeof line, "%s %s: ", level_names[level], component);
	n = k < 0 ? 0 : (size_t)k;
	if (n < sizeof line) {
		va_start(ap, fmt);
		k = vsnprintf(line + n, sizeof line - n, fmt, ap);
		va_end(ap);
		if (k > 0)
			n += (size_t)k;
	}
	if (n >= sizeof line - 1) {
		n = sizeof line - 1;
		memcpy(line + n - 3, "...", 3);
	}
	line[n++] = '\n';
	/* stderr may be a pipe that is gone; a lost log line must not kill us. */
	if (write(STDERR_FILENO, line, n) < 0)
		return;
}
