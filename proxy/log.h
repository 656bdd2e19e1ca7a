/* log: one line per event, `LEVEL component: message key=value`.
 *
 * Lines go to the configured target: stderr (with RFC 3339 timestamps unless
 * stderr is the journal or `log_timestamps = off`), syslog(3), or journald
 * (structured fields SOURCE, POOL, CLIENT, USER, DEST, SESSION_ID taken from
 * the line's key=value pairs). Access lines go with the log or to their own
 * file (opened O_APPEND, reopened by log_reopen() for logrotate).
 *
 * Each line is written with a single write(2) (or one syslog/journal call)
 * so lines from several threads never interleave. log_msg() never writes a
 * raw control byte inside a line: whatever the format produced, newlines,
 * ESC and the like come out as `\xNN`. Values a client controls (user
 * names, domains) must still go through log_quote() so they cannot inject
 * key=value pairs either. Never pass a password or token to these functions.
 *
 * Configuration (log_configure, log_reopen) is for the loop thread; the
 * writers may run on any thread.
 */
#ifndef SOCKPOOL_LOG_H
#define SOCKPOOL_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "logfield.h"

struct conf_server;

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Apply log_level, log_target, log_timestamps and access_log of a
 * configuration, at start and on reload. Nothing changes when it fails.
 * @return 0, or -errno when the access log file cannot be opened (err says
 *         which file and why). */
int log_configure(const struct conf_server *sv, char *err, size_t errlen);

/* Reopen the access log file (SIGUSR1, after logrotate moved it away).
 * @return 0 (also when there is no file), or -errno; the old file stays in
 *         use on failure. */
int log_reopen(void);

/* Whether access lines are wanted (access_log = on or FILE). */
bool log_access_enabled(void);

/* Format and write one line; a trailing newline is added. Messages longer
 * than 4 KiB (after escaping) are cut, with `...` marking the cut. */
void log_msg(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An access line (`INFO access: ...`) to the access log target; written
 * whenever the access log is on, whatever log_level says. */
void log_access(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Bytes log_quote() needs for an n-byte value: every byte as `\xNN`, the
 * quotes and the NUL. */
#define LOG_QUOTE_SIZE(n) (4 * (size_t)(n) + 3)

/* Render the n bytes at s (may hold any byte, NUL included) as one log
 * value: `\n` `\r` `\t` `\\` `\"` escaped, other control bytes, DEL, C1
 * controls and bytes that are not well-formed UTF-8 (overlong forms,
 * surrogates, past U+10FFFF) as `\xNN`; the whole value in double quotes
 * when it is empty, is `-`, or holds a blank, a quote, `=` or anything
 * escaped. s == NULL renders as `-` (no value). When buf is too small the
 * value is cut at a character boundary and ends in `..."`. len >= 8 is
 * needed; below that buf gets "" (or nothing when len is 0).
 * @return buf, NUL-terminated. */
char *log_quote(char *buf, size_t len, const char *s, size_t n);

/* log_quote() of a NUL-terminated string (NULL renders as `-`). */
char *log_quote_str(char *buf, size_t len, const char *s);

/* log_quote_str(s) into a buffer that lives until the end of the enclosing
 * block, sized for values of up to `max` bytes (a constant; longer values
 * are cut): for use as a log_*() argument, `user=%s`, LOG_Q(name, 255). */
#define LOG_Q(s, max) log_quote_str((char[LOG_QUOTE_SIZE(max)]){0}, LOG_QUOTE_SIZE(max), (s))

/* Copy the n bytes at in to out (size outlen, >= 8), replacing control
 * bytes, DEL and bytes that are not well-formed UTF-8 with `\xNN`, cut with
 * `...` when out is too small. Used by log_msg() on every line.
 * @return the length written (out is NUL-terminated). */
size_t log_sanitize(char *out, size_t outlen, const char *in, size_t n);

/* RFC 3339 with milliseconds and the UTC offset of the local zone,
 * `2026-12-01T08:50:30.123+01:00`, for `wall_ms` since the epoch. buf needs
 * 30 bytes. @return the length written (0 when buf is too small). */
size_t log_timestamp(char *buf, size_t len, long long wall_ms);

/* Whether stderr is connected to the journal: JOURNAL_STREAM (`DEV:INO`,
 * set by systemd) names the device and inode of fd 2. */
bool log_stderr_is_journal(void);

/* Pick the structured fields out of a message's key=value pairs: client=
 * CLIENT, source= SOURCE, pool= POOL, user= USER, dest= DEST, id=
 * SESSION_ID (the first of each). @return how many were stored (<= max). */
size_t log_journal_fields(const char *msg, struct log_field *out, size_t max);

#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)
#define log_warn(comp, ...)  log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_info(comp, ...)                                                                        \
	do {                                                                                       \
		if (log_enabled(LOG_INFO))                                                         \
			log_msg(LOG_INFO, comp, __VA_ARGS__);                                      \
	} while (0)
#define log_debug(comp, ...)                                                                       \
	do {                                                                                       \
		if (log_enabled(LOG_DEBUG))                                                        \
			log_msg(LOG_DEBUG, comp, __VA_ARGS__);                                     \
	} while (0)

#endif
