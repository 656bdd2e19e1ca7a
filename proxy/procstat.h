/* procstat: the process_* figures of Prometheus' client conventions, read
 * from /proc/self. Internal to proxy/; used by /metrics.
 */
#ifndef SOCKPOOL_PROCSTAT_H
#define SOCKPOOL_PROCSTAT_H

#include <stdint.h>

struct procstat {
	double cpu_seconds;	   /* user + system CPU time */
	uint64_t virtual_bytes;	   /* address space size */
	uint64_t resident_bytes;   /* resident set size */
	double start_time_seconds; /* unix time the process started */
	uint64_t open_fds;
	uint64_t max_fds; /* soft RLIMIT_NOFILE; UINT64_MAX when unlimited */
};

/* Parse the text of /proc/self/stat (proc(5); the command name may hold
 * blanks and parentheses). `ticks_per_s` is sysconf(_SC_CLK_TCK),
 * `page_size` sysconf(_SC_PAGESIZE), `boot_time_s` the btime line of
 * /proc/stat. Fills cpu_seconds, virtual_bytes, resident_bytes and
 * start_time_seconds only. @return 0 or -EINVAL. */
int procstat_parse_stat(const char *text, long ticks_per_s, long page_size, uint64_t boot_time_s,
			struct procstat *out);

/* Everything in struct procstat for this process.
 * @return 0 or -errno (no /proc); *out is zeroed first. */
int procstat_read(struct procstat *out);

#endif
