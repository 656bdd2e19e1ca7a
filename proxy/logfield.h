/* logfield: a journald field taken from a log line (log.h, logsink.h). */
#ifndef SOCKPOOL_LOGFIELD_H
#define SOCKPOOL_LOGFIELD_H

#include <stddef.h>

/* name is static; value points into the line, surrounding quotes removed,
 * escapes left as they are. */
struct log_field {
	const char *name;
	const char *value;
	size_t len;
};

#endif
