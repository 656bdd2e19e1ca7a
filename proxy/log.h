/* log: one line per event on stderr, `LEVEL component: message key=value`.
 *
 * Each line is written with a single write(2) so lines from several threads
 * never interleave. Never pass a password or token to these functions.
 */
#ifndef SOCKPOOL_LOG_H
#define SOCKPOOL_LOG_H

#include <stdbool.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Format and write one line; a trailing newline is added. Lines longer than
 * 1 KiB are cut, with `...` marking the cut. */
void log_msg(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
