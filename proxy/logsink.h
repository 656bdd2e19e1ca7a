/* logsink: the syslog and journald writers behind log.c.
 *
 * Internal to the log module: kept apart because <syslog.h> names its
 * priorities LOG_INFO and LOG_DEBUG, as log.h names its levels. `prio` is
 * a syslog priority (3 error, 4 warning, 6 info, 7 debug).
 */
#ifndef SOCKPOOL_LOGSINK_H
#define SOCKPOOL_LOGSINK_H

#include <stdbool.h>
#include <stddef.h>

#include "logfield.h"

#define LOGSINK_JOURNAL_SOCKET "/run/systemd/journal/socket"

void logsink__syslog_open(void);
void logsink__syslog_close(void);
void logsink__syslog(int prio, const char *line);

/* Whether the journal's socket exists (at start and reload: an entry sent
 * to a journal that is not there is lost, with libsystemd silently). */
bool logsink__journal_available(void);

/* Send one entry: MESSAGE=line, PRIORITY, SYSLOG_IDENTIFIER=sockpool,
 * SOCKPOOL_COMPONENT and the fields (values without newlines).
 * @return 0 or -errno (the caller then writes the line to stderr). */
int logsink__journal(int prio, const char *component, const char *line,
		     const struct log_field *fields, size_t n_fields);

/* The journal's native protocol over a datagram socket at `path`, as used
 * when sockpool is built without libsystemd. @return 0 or -errno. */
int logsink__journal_native(const char *path, int prio, const char *component, const char *line,
			    const struct log_field *fields, size_t n_fields);

#endif
