/* conf internals shared by the files of conf/ (not part of the public API). */
#ifndef SOCKPOOL_CONF_INTERNAL_H
#define SOCKPOOL_CONF_INTERNAL_H

#include <stdio.h>
#include <sys/types.h>

#include "conf.h"

/* A piece of a longer string: not NUL-terminated. */
struct conf__span {
	const char *p;
	size_t len;
};

bool conf__is_blank(char c);
struct conf__span conf__trim(struct conf__span s);
struct conf__span conf__span_of(const char *text);
bool conf__span_eq(struct conf__span s, const char *word); /* case-insensitive */

/* Parsers on spans. @return 0, -EINVAL (not of the form) or -ERANGE (too large
 * or out of the allowed range). */
int conf__parse_uint(struct conf__span s, uint64_t max, uint64_t *out);
int conf__parse_duration(struct conf__span s, uint64_t *ms);
int conf__parse_rate(struct conf__span s, struct conf_threshold *out); /* `N/period` only */
int conf__parse_threshold(struct conf__span s, struct conf_threshold *out);
int conf__parse_addr(struct conf__span s, struct sockaddr_storage *out);
int conf__parse_addr_port(struct conf__span s, bool need_port, struct sockaddr_storage *out);
int conf__parse_cidr(struct conf__span s, struct conf_cidr *out);
/* Appends the `,`/`;` separated networks of `s` to `list` (may hold some already). */
/* On error *bad_item (if not NULL) is the item that failed. */
int conf__cidr_list_append(struct conf_cidr_list *list, struct conf__span s,
			   struct conf__span *bad_item);

bool conf__addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
bool conf__addr_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
bool conf__addr_is_any(const struct sockaddr_storage *ss);   /* 0.0.0.0 or :: */
uint16_t conf__addr_port(const struct sockaddr_storage *ss); /* host order */
bool conf__cidr_contains(const struct conf_cidr *net, const struct sockaddr *addr);

/* `5m`, `90s`, `1500ms`, `0`: the largest unit that divides exactly. */
const char *conf__duration_str(uint64_t ms, char *buf, size_t len);
/* `immediate` or `3/1m`. */
const char *conf__threshold_str(const struct conf_threshold *t, char *buf, size_t len);
const char *conf__cidr_str(const struct conf_cidr *net, char *buf, size_t len);

/* Whose access conf__may_read checks: a uid with its primary and
 * supplementary groups (borrowed). */
struct conf__cred {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	size_t n_groups;
};

/* Whether `cred` can read `path` by the mode bits (ACLs are not looked at):
 * search permission on every directory of its real path, read permission on
 * the file; uid 0 always can. On 0 `blocker` names the directory or file in
 * the way.
 * @return 1 yes, 0 no, or -errno (the path cannot be resolved). */
int conf__may_read(const char *path, const struct conf__cred *cred, char *blocker, size_t len);

#endif
