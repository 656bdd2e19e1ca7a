/* The loader of conf/: an inih stream reader that owns line handling
 * (numbers, length, CRLF, BOM, comments, section headers), a key handler
 * that fills a `struct conf` under construction, and a final pass that
 * resolves what may be defined in any order ([defaults], pool members,
 * pool names) and fills in the defaults. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* getline, explicit_bzero */
#endif
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define NAME_MAX_LEN		 64
#define USER_MAX_LEN		 255
#define WEIGHT_MAX		 65535
#define PRIORITY_MAX		 65535
#define WORKERS_MAX		 64
#define DEFAULT_RULE_DURATION_MS (5 * 60 * 1000)

enum sect_kind { SECT_NONE, SECT_SERVER, SECT_DEFAULTS, SECT_SOURCE, SECT_POOL, SECT_USER };

#define KEY_REPEAT 1u /* may appear several times in one section, values accumulate */
#define KEY_SECRET 2u /* never echoed in messages */
#define KEY_POLICY 4u /* per-source policy: also allowed in [defaults] */

struct key_def {
	const char *name;
	unsigned id;
	unsigned flags;
};

enum server_key {
	SK_LISTEN,
	SK_ADMIN_LISTEN,
	SK_ALLOW,
	SK_AUTH,
	SK_DEFAULT_POOL,
	SK_HANDSHAKE_TIMEOUT,
	SK_CONNECT_TIMEOUT,
	SK_IDLE_TIMEOUT,
	SK_MAX_CONNECTIONS,
	SK_BIND_UNLISTED,
	SK_DENY_DESTINATIONS,
	SK_TCP_KEEPALIVE,
	SK_ON_POOL_EXHAUSTED,
	SK_LOG_LEVEL,
	SK_ACCESS_LOG,
	SK_WORKERS,
	SK_MAX_CONN_PER_CLIENT,
	SK_SHUTDOWN_TIMEOUT,
	SK_ADMIN_TOKEN,
	SK_USER,
	SK_LOG_TARGET,
	SK_LOG_TIMESTAMPS,
	SK_ALLOW_DESTINATIONS,
	SK_STALL_TIMEOUT,
	SK_RELOAD_ON_CHANGE,
	SK_RELAY,
};

static const struct key_def server_keys[] = {
    {"listen", SK_LISTEN, KEY_REPEAT},
    {"admin_listen", SK_ADMIN_LISTEN, 0},
    {"allow", SK_ALLOW, KEY_REPEAT},
    {"auth", SK_AUTH, 0},
    {"default_pool", SK_DEFAULT_POOL, 0},
    {"handshake_timeout", SK_HANDSHAKE_TIMEOUT, 0},
    {"connect_timeout", SK_CONNECT_TIMEOUT, 0},
    {"idle_timeout", SK_IDLE_TIMEOUT, 0},
    {"max_connections", SK_MAX_CONNECTIONS, 0},
    {"bind_unlisted", SK_BIND_UNLISTED, 0},
    {"deny_destinations", SK_DENY_DESTINATIONS, KEY_REPEAT},
    {"tcp_keepalive", SK_TCP_KEEPALIVE, 0},
    {"on_pool_exhausted", SK_ON_POOL_EXHAUSTED, 0},
    {"log_level", SK_LOG_LEVEL, 0},
    {"access_log", SK_ACCESS_LOG, 0},
    {"workers", SK_WORKERS, 0},
    {"max_connections_per_client", SK_MAX_CONN_PER_CLIENT, 0},
    {"shutdown_timeout", SK_SHUTDOWN_TIMEOUT, 0},
    {"admin_token", SK_ADMIN_TOKEN, KEY_SECRET},
    {"user", SK_USER, 0},
    {"log_target", SK_LOG_TARGET, 0},
    {"log_timestamps", SK_LOG_TIMESTAMPS, 0},
    {"allow_destinations", SK_ALLOW_DESTINATIONS, KEY_REPEAT},
    {"stall_timeout", SK_STALL_TIMEOUT, 0},
    {"reload_on_change", SK_RELOAD_ON_CHANGE, 0},
    {"relay", SK_RELAY, 0},
};

/* Rule keys come in threes: RULE (`= off`), RULE + 1 (.trigger), RULE + 2 (.duration). */
enum source_key {
	K_UNPLUMBED,
	K_UNPLUMBED_TRIGGER,
	K_UNPLUMBED_DURATION,
	K_UNHEALTHY,
	K_UNHEALTHY_TRIGGER,
	K_UNHEALTHY_DURATION,
	K_MAX_CONNECTIONS,
	K_RATE,
	K_RESUME,
	K_PREFIX_PICK,
	K_ADDRESS,
	K_PREFIX,
	K_PROXY_SERVER,
	K_PROXY_SOURCE,
	K_PROXY_USERNAME,
	K_PROXY_PASSWORD,
	K_HEALTH_CHECK,
	K_RESUME_HEALTHY,
};

static const struct key_def source_keys[] = {
    {"suspend_when_unplumbed", K_UNPLUMBED, KEY_POLICY},
    {"suspend_when_unplumbed.trigger", K_UNPLUMBED_TRIGGER, KEY_POLICY},
    {"suspend_when_unplumbed.duration", K_UNPLUMBED_DURATION, KEY_POLICY},
    {"suspend_when_proxy_unhealthy", K_UNHEALTHY, KEY_POLICY},
    {"suspend_when_proxy_unhealthy.trigger", K_UNHEALTHY_TRIGGER, KEY_POLICY},
    {"suspend_when_proxy_unhealthy.duration", K_UNHEALTHY_DURATION, KEY_POLICY},
    {"max_connections", K_MAX_CONNECTIONS, KEY_POLICY},
    {"rate", K_RATE, KEY_POLICY},
    {"resume_when_plumbed", K_RESUME, KEY_POLICY},
    {"prefix_pick", K_PREFIX_PICK, KEY_POLICY},
    {"address", K_ADDRESS, 0},
    {"prefix", K_PREFIX, 0},
    {"socks5_proxy_server", K_PROXY_SERVER, 0},
    {"socks5_proxy_source_address", K_PROXY_SOURCE, 0},
    {"socks5_proxy_username", K_PROXY_USERNAME, 0},
    {"socks5_proxy_password", K_PROXY_PASSWORD, KEY_SECRET},
    {"health_check", K_HEALTH_CHECK, 0},
    {"resume_when_healthy", K_RESUME_HEALTHY, 0},
};

enum pool_key { PK_STRATEGY, PK_HASH_KEY, PK_SOURCE };

static const struct key_def pool_keys[] = {
    {"strategy", PK_STRATEGY, 0},
    {"hash_key", PK_HASH_KEY, 0},
    {"source", PK_SOURCE, KEY_REPEAT},
};

enum user_key { UK_PASSWORD_HASH, UK_PASSWORD, UK_POOL };

static const struct key_def user_keys[] = {
    {"password_hash", UK_PASSWORD_HASH, KEY_SECRET},
    {"password", UK_PASSWORD, KEY_SECRET},
    {"pool", UK_POOL, 0},
};

#define N_KEYS(tab) (sizeof(tab) / sizeof((tab)[0]))

/* Which keys a section set, and on which line (the first one for repeatable keys). */
struct keyset {
	uint32_t seen;
	unsigned line[32];
};

struct rule_draft {
	struct conf_threshold trigger;
	uint64_t duration_ms;
};

/* Policy keys as written in one [source] or in [defaults]; merged at the end. */
struct policy {
	struct keyset ks;
	struct rule_draft rule[2]; /* 0: unplumbed, 1: proxy_unhealthy */
	uint32_t max_connections;
	struct conf_threshold rate;
	bool resume_when_plumbed;
	enum conf_prefix_pick prefix_pick;
};

struct pool_item {
	char *text;
	uint32_t weight;
	uint32_t priority;
	bool has_priority;
	unsigned line;
};

/* A pool `source` line whose ` ;` comment starts with what may be a source. */
struct lost_item {
	unsigned line;
	size_t pool;
	char token[72];
};

struct pool_meta {
	struct keyset ks;
	struct pool_item *items;
	size_t n_items, cap;
};

struct loader {
	const char *name; /* file name in messages */
	char *err;
	size_t errlen;
	int rc; /* 0 until the first error: the first error wins */
	unsigned line;

	FILE *fp;
	char *lbuf;
	size_t lcap;
	const char *pos;

	enum sect_kind sect;
	size_t idx;
	char label[USER_MAX_LEN + 16];

	struct conf *c;
	size_t sources_cap, pools_cap, users_cap, listens_cap, warnings_cap;
	struct policy *src_meta; /* parallel to c->sources */
	size_t src_meta_cap;
	struct pool_meta *pool_meta; /* parallel to c->pools */
	size_t pool_meta_cap;
	struct keyset *user_meta; /* parallel to c->users */
	size_t user_meta_cap;
	struct keyset server;
	unsigned server_line;
	struct policy defaults;
	unsigned defaults_line;
	struct lost_item *lost; /* `source = a ; b` candidates, checked at the end */
	size_t n_lost, lost_cap;
	bool has_stat; /* st is the file's (conf_load_file) */
	struct stat st;
};

static bool has(const struct keyset *ks, unsigned id)
{
	return ks->seen & (1u << id);
}

__attribute__((format(printf, 4, 0))) static void failv(struct loader *ld, int rc, unsigned line,
							const char *fmt, va_list ap)
{
	int n;

	if (ld->rc)
		return;
	ld->rc = rc;
	if (!ld->err || !ld->errlen)
		return;
	if (line)
		n = snprintf(ld->err, ld->errlen, "%s:%u: ", ld->name, line);
	else
		n = snprintf(ld->err, ld->errlen, "%s: ", ld->name);
	if (n >= 0 && (size_t)n < ld->errlen)
		vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
}

/* Records the first error; `line` 0 leaves out the line number. */
__attribute__((format(printf, 3, 4))) static void fail(struct loader *ld, unsigned line,
						       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	failv(ld, -EINVAL, line, fmt, ap);
	va_end(ap);
}

static void oom(struct loader *ld)
{
	if (ld->rc)
		return;
	ld->rc = -ENOMEM;
	if (ld->err && ld->errlen)
		snprintf(ld->err, ld->errlen, "%s: out of memory", ld->name);
}

/* Returns `arr` grown to hold `need` elements (new ones zeroed), or NULL. */
static void *grow(void *arr, size_t *cap, size_t need, size_t size)
{
	size_t ncap = *cap ? *cap : 4;

	if (need <= *cap)
		return arr;
	while (ncap < need)
		ncap *= 2;
	char *p = realloc(arr, ncap * size);
	if (!p)
		return NULL;
	memset(p + *cap * size, 0, (ncap - *cap) * size);
	*cap = ncap;
	return p;
}

#define GROW(ld, arr, cap, need)                                                                   \
	do {                                                                                       \
		void *grown_ = grow((arr), &(cap), (need), sizeof(*(arr)));                        \
		if (!grown_) {                                                                     \
			oom(ld);                                                                   \
			return -ENOMEM;                                                            \
		}                                                                                  \
		(arr) = grown_;                                                                    \
	} while (0)

static char *dup_span(struct conf__span s)
{
	char *p = malloc(s.len + 1);

	if (p) {
		memcpy(p, s.p, s.len);
		p[s.len] = '\0';
	}
	return p;
}

__attribute__((format(printf, 2, 3))) static int warn(struct loader *ld, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	msg = n < 0 ? NULL : malloc((size_t)n + 1);
	if (!msg) {
		oom(ld);
		return -ENOMEM;
	}
	va_start(ap, fmt);
	vsnprintf(msg, (size_t)n + 1, fmt, ap);
	va_end(ap);
	void *grown = grow(ld->c->warnings, &ld->warnings_cap, ld->c->n_warnings + 1,
			   sizeof(*ld->c->warnings));
	if (!grown) {
		free(msg);
		oom(ld);
		return -ENOMEM;
	}
	ld->c->warnings = grown;
	ld->c->warnings[ld->c->n_warnings++] = msg;
	return 0;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* Source and pool names end up in logs, metrics labels and admin URLs. */
static bool valid_name(struct conf__span s)
{
	if (!s.len || s.len > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < s.len; i++)
		if (!name_char(s.p[i]))
			return false;
	return true;
}

/* User names are RFC 1929 user names: 1..255 visible bytes. */
static bool valid_user_name(struct conf__span s)
{
	if (!s.len || s.len > USER_MAX_LEN)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c <= 0x20 || c == 0x7f || c == '"')
			return false;
	}
	return true;
}

static bool visible_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void set_label(struct loader *ld, enum sect_kind kind, const char *name)
{
	static const char *const kinds[] = {"", "server", "defaults", "source", "pool", "user"};

	if (name)
		snprintf(ld->label, sizeof(ld->label), "[%s \"%s\"]", kinds[kind], name);
	else
		snprintf(ld->label, sizeof(ld->label), "[%s]", kinds[kind]);
}

static int find_named(const char *name, const void *arr, size_t n, size_t size, size_t name_off)
{
	for (size_t i = 0; i < n; i++) {
		const char *const *np = (const void *)((const char *)arr + i * size + name_off);
		if (*np && strcmp(*np, name) == 0)
			return (int)i;
	}
	return -ENOENT;
}

int conf_find_source(const struct conf *conf, const char *name)
{
	if (!conf || !name)
		return -EINVAL;
	return find_named(name, conf->sources, conf->n_sources, sizeof(*conf->sources),
			  offsetof(struct conf_source, name));
}

int conf_find_pool(const struct conf *conf, const char *name)
{
	if (!conf || !name)
		return -EINVAL;
	return find_named(name, conf->pools, conf->n_pools, sizeof(*conf->pools),
			  offsetof(struct conf_pool, name));
}

int conf_find_user(const struct conf *conf, const char *name)
{
	if (!conf || !name)
		return -EINVAL;
	return find_named(name, conf->users, conf->n_users, sizeof(*conf->users),
			  offsetof(struct conf_user, name));
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void conf_free(struct conf *conf)
{
	if (!conf)
		return;
	free(conf->path);
	for (size_t i = 0; i < conf->server.n_listens; i++)
		free(conf->server.listens[i].pool);
	free(conf->server.listens);
	free(conf->server.allow.items);
	free(conf->server.deny_destinations.items);
	free(conf->server.allow_destinations.items);
	free(conf->server.access_log_file);
	free(conf->server.default_pool);
	free_secret(conf->server.admin_token);
	free(conf->server.user);
	for (size_t i = 0; i < conf->n_sources; i++) {
		free(conf->sources[i].name);
		free(conf->sources[i].proxy_username);
		free_secret(conf->sources[i].proxy_password);
	}
	free(conf->sources);
	for (size_t i = 0; i < conf->n_pools; i++) {
		free(conf->pools[i].name);
		free(conf->pools[i].entries);
	}
	free(conf->pools);
	for (size_t i = 0; i < conf->n_users; i++) {
		free(conf->users[i].name);
		free_secret(conf->users[i].password_hash);
		free_secret(conf->users[i].password);
		free(conf->users[i].pool);
	}
	free(conf->users);
	for (size_t i = 0; i < conf->n_warnings; i++)
		free(conf->warnings[i]);
	free(conf->warnings);
	free(conf);
}

static int add_source(struct loader *ld, const char *name, unsigned line)
{
	struct conf *c = ld->c;

	GROW(ld, c->sources, ld->sources_cap, c->n_sources + 1);
	GROW(ld, ld->src_meta, ld->src_meta_cap, c->n_sources + 1);
	char *copy = strdup(name);
	if (!copy) {
		oom(ld);
		return -ENOMEM;
	}
	struct conf_source *s = &c->sources[c->n_sources];
	memset(s, 0, sizeof(*s));
	memset(&ld->src_meta[c->n_sources], 0, sizeof(ld->src_meta[0]));
	s->name = copy;
	s->line = line;
	s->kind = CONF_SOURCE_ADDRESS;
	return (int)c->n_sources++;
}

static int add_pool(struct loader *ld, const char *name, unsigned line)
{
	struct conf *c = ld->c;

	GROW(ld, c->pools, ld->pools_cap, c->n_pools + 1);
	GROW(ld, ld->pool_meta, ld->pool_meta_cap, c->n_pools + 1);
	char *copy = strdup(name);
	if (!copy) {
		oom(ld);
		return -ENOMEM;
	}
	struct conf_pool *p = &c->pools[c->n_pools];
	memset(p, 0, sizeof(*p));
	memset(&ld->pool_meta[c->n_pools], 0, sizeof(ld->pool_meta[0]));
	p->name = copy;
	p->line = line;
	p->strategy = CONF_STRATEGY_ROUND_ROBIN;
	p->hash_key = CONF_HASH_KEY_DESTINATION;
	return (int)c->n_pools++;
}

static int add_pool_item(struct loader *ld, size_t pool, struct conf__span text, uint32_t weight,
			 uint32_t priority, bool has_priority, unsigned line)
{
	struct pool_meta *pm = &ld->pool_meta[pool];

	GROW(ld, pm->items, pm->cap, pm->n_items + 1);
	struct pool_item *it = &pm->items[pm->n_items];
	it->text = dup_span(text);
	if (!it->text) {
		oom(ld);
		return -ENOMEM;
	}
	it->weight = weight;
	it->priority = priority;
	it->has_priority = has_priority;
	it->line = line;
	pm->n_items++;
	return 0;
}

static int add_user(struct loader *ld, const char *name, unsigned line)
{
	struct conf *c = ld->c;

	GROW(ld, c->users, ld->users_cap, c->n_users + 1);
	GROW(ld, ld->user_meta, ld->user_meta_cap, c->n_users + 1);
	char *copy = strdup(name);
	if (!copy) {
		oom(ld);
		return -ENOMEM;
	}
	struct conf_user *u = &c->users[c->n_users];
	memset(u, 0, sizeof(*u));
	memset(&ld->user_meta[c->n_users], 0, sizeof(ld->user_meta[0]));
	u->name = copy;
	u->line = line;
	return (int)c->n_users++;
}

static void on_section(struct loader *ld, struct conf__span s)
{
	static const char expect[] = "expected [server], [defaults], [source \"NAME\"], "
				     "[pool \"NAME\"] or [user \"NAME\"]";
	char name[USER_MAX_LEN + 1];
	unsigned line = ld->line;
	enum sect_kind kind;
	int i;

	if (s.len < 2 || s.p[s.len - 1] != ']' || memchr(s.p + 1, ']', s.len - 2)) {
		fail(ld, line, "expected a section header like [source \"ip-1\"], got '%.*s'",
		     (int)s.len, s.p);
		return;
	}
	struct conf__span in = conf__trim((struct conf__span){s.p + 1, s.len - 2});
	size_t n = 0;
	while (n < in.len && !conf__is_blank(in.p[n]) && in.p[n] != '"')
		n++;
	struct conf__span type = {in.p, n};
	struct conf__span rest = conf__trim((struct conf__span){in.p + n, in.len - n});
	struct conf__span nm = rest;
	if (rest.len && rest.p[0] == '"') {
		if (rest.len < 2 || rest.p[rest.len - 1] != '"' ||
		    memchr(rest.p + 1, '"', rest.len - 2)) {
			fail(ld, line,
			     "%.*s: expected a name in double quotes, like "
			     "[source \"ip-1\"]",
			     (int)s.len, s.p);
			return;
		}
		nm = (struct conf__span){rest.p + 1, rest.len - 2};
	}

	if (conf__span_eq(type, "server")) {
		kind = SECT_SERVER;
	} else if (conf__span_eq(type, "defaults")) {
		kind = SECT_DEFAULTS;
	} else if (conf__span_eq(type, "source")) {
		kind = SECT_SOURCE;
	} else if (conf__span_eq(type, "pool")) {
		kind = SECT_POOL;
	} else if (conf__span_eq(type, "user")) {
		kind = SECT_USER;
	} else {
		fail(ld, line, "unknown section %.*s; %s", (int)s.len, s.p, expect);
		return;
	}

	if (kind == SECT_SERVER || kind == SECT_DEFAULTS) {
		unsigned *first = kind == SECT_SERVER ? &ld->server_line : &ld->defaults_line;
		set_label(ld, kind, NULL);
		if (rest.len) {
			fail(ld, line, "%.*s: %s takes no name", (int)s.len, s.p, ld->label);
			return;
		}
		if (*first) {
			fail(ld, line,
			     "%s: section defined twice (first at line %u); keep its "
			     "keys in one section",
			     ld->label, *first);
			return;
		}
		*first = line;
		ld->sect = kind;
		return;
	}

	const char *kname = kind == SECT_SOURCE ? "source" : kind == SECT_POOL ? "pool" : "user";
	if (!rest.len) {
		fail(ld, line, "[%s]: needs a name, e.g. [%s \"%s\"]", kname, kname,
		     kind == SECT_SOURCE ? "ip-1"
		     : kind == SECT_POOL ? "main"
					 : "mta1");
		return;
	}
	if (kind == SECT_USER ? !valid_user_name(nm) : !valid_name(nm)) {
		if (kind == SECT_USER)
			fail(ld, line,
			     "%.*s: a user name is 1..%d visible characters without "
			     "blanks or quotes",
			     (int)s.len, s.p, USER_MAX_LEN);
		else
			fail(ld, line,
			     "%.*s: a %s name is 1..%d characters of letters, digits, "
			     "'-', '_' and '.'",
			     (int)s.len, s.p, kname, NAME_MAX_LEN);
		return;
	}
	memcpy(name, nm.p, nm.len);
	name[nm.len] = '\0';
	set_label(ld, kind, name);

	if (kind == SECT_SOURCE) {
		i = conf_find_source(ld->c, name);
		if (i >= 0) {
			fail(ld, line, "%s: source defined twice (first at line %u)", ld->label,
			     ld->c->sources[i].line);
			return;
		}
		i = add_source(ld, name, line);
	} else if (kind == SECT_POOL) {
		i = conf_find_pool(ld->c, name);
		if (i >= 0) {
			fail(ld, line, "%s: pool defined twice (first at line %u)", ld->label,
			     ld->c->pools[i].line);
			return;
		}
		i = add_pool(ld, name, line);
	} else {
		i = conf_find_user(ld->c, name);
		if (i >= 0) {
			fail(ld, line, "%s: user defined twice (first at line %u)", ld->label,
			     ld->c->users[i].line);
			return;
		}
		i = add_user(ld, name, line);
	}
	if (i < 0)
		return;
	ld->sect = kind;
	ld->idx = (size_t)i;
}

/* One raw line with its '\n', from the file or the string. @return 1, 0 at the end. */
static int next_raw_line(struct loader *ld, const char **line, size_t *len)
{
	if (ld->fp) {
		errno = 0;
		ssize_t n = getline(&ld->lbuf, &ld->lcap, ld->fp);
		if (n < 0) {
			if (ferror(ld->fp)) {
				int e = errno ? errno : EIO;
				if (!ld->rc) {
					ld->rc = -e;
					if (ld->err && ld->errlen)
						snprintf(ld->err, ld->errlen, "%s: cannot read: %s",
							 ld->name, strerror(e));
				}
			}
			return 0;
		}
		*line = ld->lbuf;
		*len = (size_t)n;
		return 1;
	}
	if (!ld->pos || !*ld->pos)
		return 0;
	const char *nl = strchr(ld->pos, '\n');
	size_t n = nl ? (size_t)(nl - ld->pos) + 1 : strlen(ld->pos);
	*line = ld->pos;
	*len = n;
	ld->pos += n;
	return 1;
}

static bool key_char(char c)
{
	return name_char(c) && c != '-';
}

static bool key_is(struct conf__span key, const char *name)
{
	return key.len == strlen(name) && memcmp(key.p, name, key.len) == 0;
}

/* inih reads ` ;` as the start of a comment, also on a list key, where
 * `source = ip-1 ; ip-2` then silently loses ip-2. When the comment starts
 * with what looks like one more item, say so: an address or network on the
 * [server] lists now, a pool entry at the end (when the sources are known).
 * @return 0, or -ENOMEM. */
static int lost_item_check(struct loader *ld, struct conf__span key, struct conf__span comment)
{
	struct conf__span c = conf__trim(comment), tok;
	struct sockaddr_storage ss;
	struct conf_cidr net;
	size_t n = 0;
	bool lost;

	while (n < c.len && !conf__is_blank(c.p[n]) && c.p[n] != ',' && c.p[n] != ';')
		n++;
	tok = (struct conf__span){c.p, n};
	if (!tok.len)
		return 0;
	if (ld->sect == SECT_POOL && key_is(key, "source")) {
		if (tok.len >= sizeof(ld->lost[0].token))
			return 0;
		GROW(ld, ld->lost, ld->lost_cap, ld->n_lost + 1);
		struct lost_item *it = &ld->lost[ld->n_lost++];
		it->line = ld->line;
		it->pool = ld->idx;
		memcpy(it->token, tok.p, tok.len);
		it->token[tok.len] = '\0';
		return 0;
	}
	if (ld->sect != SECT_SERVER)
		return 0;
	if (key_is(key, "listen"))
		lost = conf__parse_addr_port(tok, true, &ss) == 0;
	else if (key_is(key, "allow") || key_is(key, "deny_destinations") ||
		 key_is(key, "allow_destinations"))
		lost = conf__parse_cidr(tok, &net) == 0;
	else
		return 0;
	if (!lost)
		return 0;
	return warn(ld,
		    "%s:%u: [server] %.*s: ' ;' starts a comment, so '%.*s' is not in the "
		    "list; a list item probably lost: write `a; b` without a blank before ';'",
		    ld->name, ld->line, (int)key.len, key.p, (int)tok.len, tok.p);
}

/* Hands inih one line at a time, already reduced to what matters: no
 * comment, no leading blanks (so inih never sees a continuation line), no
 * BOM, no CR. Section headers are handled here (inih would truncate long
 * names and say nothing about empty sections) and given to inih as blank
 * lines. A line that does not fit inih's buffer is an error. */
static char *on_read(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	const char *p;
	size_t len;

	if (ld->rc || num < 4 || !next_raw_line(ld, &p, &len))
		return NULL;
	ld->line++;
	if (len && p[len - 1] == '\n')
		len--;
	if (len && p[len - 1] == '\r')
		len--;
	if (ld->line == 1 && len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
		p += 3;
		len -= 3;
	}
	if (memchr(p, '\0', len)) {
		fail(ld, ld->line, "NUL byte in line; is this a text file?");
		return NULL;
	}
	struct conf__span s = conf__trim((struct conf__span){p, len});
	str[0] = '\0';
	if (!s.len || s.p[0] == ';' || s.p[0] == '#')
		return str;
	struct conf__span comment = {NULL, 0};
	for (size_t i = 1; i < s.len; i++) {
		if (s.p[i] == ';' && conf__is_blank(s.p[i - 1])) {
			comment = (struct conf__span){s.p + i + 1, s.len - i - 1};
			s.len = i;
			break;
		}
	}
	s = conf__trim(s);
	size_t max = (size_t)num - 3; /* inih: room for "\r\n\0" */
	if (s.len > max) {
		fail(ld, ld->line,
		     "line too long (max %zu characters); split long source "
		     "lists over several 'source =' lines",
		     max);
		return NULL;
	}
	if (s.p[0] == '[') {
		on_section(ld, s);
		return ld->rc ? NULL : str;
	}
	const char *eq = memchr(s.p, '=', s.len);
	if (!eq) {
		fail(ld, ld->line, "expected 'key = value', a [section] or a comment, got '%.*s'",
		     (int)s.len, s.p);
		return NULL;
	}
	struct conf__span key = conf__trim((struct conf__span){s.p, (size_t)(eq - s.p)});
	bool ok = key.len > 0;
	for (size_t i = 0; ok && i < key.len; i++)
		ok = key_char(key.p[i]);
	if (!ok) {
		fail(ld, ld->line,
		     "expected 'key = value' with a key of letters, digits, '_' "
		     "and '.', got '%.*s'",
		     (int)s.len, s.p);
		return NULL;
	}
	if (comment.p && lost_item_check(ld, key, comment) < 0)
		return NULL;
	memcpy(str, s.p, s.len);
	str[s.len] = '\0';
	return str;
}

static const struct key_def *lookup(const struct key_def *tab, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tab[i].name, name) == 0)
			return &tab[i];
	return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[NAME_MAX_LEN + 1];

	if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static void unknown_key(struct loader *ld, const char *name, const struct key_def *tab, size_t n)
{
	const char *home = NULL;

	if (ld->sect != SECT_SERVER && lookup(server_keys, N_KEYS(server_keys), name))
		home = "[server]";
	else if (ld->sect != SECT_SOURCE && ld->sect != SECT_DEFAULTS &&
		 lookup(source_keys, N_KEYS(source_keys), name))
		home = "[source \"NAME\"] or [defaults]";
	else if (ld->sect != SECT_POOL && lookup(pool_keys, N_KEYS(pool_keys), name))
		home = "[pool \"NAME\"]";
	else if (ld->sect != SECT_USER && lookup(user_keys, N_KEYS(user_keys), name))
		home = "[user \"NAME\"]";
	if (home) {
		fail(ld, ld->line, "%s %s: unknown key here; it belongs in %s", ld->label, name,
		     home);
		return;
	}
	const char *best = NULL;
	size_t best_d = 3;
	for (size_t i = 0; i < n; i++) {
		if (ld->sect == SECT_DEFAULTS && !(tab[i].flags & KEY_POLICY))
			continue;
		size_t d = edit_distance(name, tab[i].name);
		if (d < best_d) {
			best_d = d;
			best = tab[i].name;
		}
	}
	if (best) {
		fail(ld, ld->line, "%s %s: unknown key; did you mean '%s'?", ld->label, name, best);
		return;
	}
	char list[400];
	size_t used = 0;
	list[0] = '\0';
	for (size_t i = 0; i < n && used < sizeof(list); i++) {
		if (ld->sect == SECT_DEFAULTS && !(tab[i].flags & KEY_POLICY))
			continue;
		int w = snprintf(list + used, sizeof(list) - used, "%s%s", used ? ", " : "",
				 tab[i].name);
		if (w > 0)
			used += (size_t)w;
	}
	fail(ld, ld->line, "%s %s: unknown key; expected one of %s", ld->label, name, list);
}

/* A value error: `[section] key: expected WHAT, got 'VALUE'` (secrets not echoed). */
__attribute__((format(printf, 4, 5))) static void bad(struct loader *ld, const struct key_def *k,
						      const char *value, const char *fmt, ...)
{
	char what[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (k->flags & KEY_SECRET)
		fail(ld, ld->line, "%s %s: expected %s (value not shown)", ld->label, k->name,
		     what);
	else
		fail(ld, ld->line, "%s %s: expected %s, got '%s'", ld->label, k->name, what, value);
}

/* One of `words` (NULL-terminated, case-insensitive); @return its index or -1. */
static int choice(struct loader *ld, const struct key_def *k, const char *value,
		  const char *const *words)
{
	char alts[160];
	size_t used = 0;

	for (int i = 0; words[i]; i++)
		if (conf__span_eq(conf__span_of(value), words[i]))
			return i;
	alts[0] = '\0';
	for (int i = 0; words[i] && used < sizeof(alts); i++) {
		int w =
		    snprintf(alts + used, sizeof(alts) - used, "%s%s", i ? " | " : "", words[i]);
		if (w > 0)
			used += (size_t)w;
	}
	bad(ld, k, value, "%s", alts);
	return -1;
}

static void uint_key(struct loader *ld, const struct key_def *k, const char *value, uint64_t min,
		     uint64_t max, uint32_t *out)
{
	uint64_t v;

	if (conf__parse_uint(conf__span_of(value), max, &v) || v < min) {
		bad(ld, k, value, "an integer from %llu to %llu", (unsigned long long)min,
		    (unsigned long long)max);
		return;
	}
	*out = (uint32_t)v;
}

static void duration_key(struct loader *ld, const struct key_def *k, const char *value,
			 bool allow_zero, uint64_t *out)
{
	uint64_t ms;
	int rc = conf__parse_duration(conf__span_of(value), &ms);

	if (rc == -ERANGE) {
		bad(ld, k, value, "a duration that fits in 64 bits of milliseconds");
		return;
	}
	if (rc) {
		bad(ld, k, value, "a duration like 500ms, 30s, 5m, 2h or 1d%s",
		    allow_zero ? " (0 = off)" : "");
		return;
	}
	if (!allow_zero && ms == 0) {
		bad(ld, k, value, "a duration > 0, like 30s or 5m");
		return;
	}
	*out = ms;
}

static void bool_key(struct loader *ld, const struct key_def *k, const char *value, bool *out)
{
	if (conf_parse_bool(value, out))
		bad(ld, k, value, "yes | no (also true/false, on/off, 1/0)");
}

static void name_key(struct loader *ld, const struct key_def *k, const char *value, char **out)
{
	if (!valid_name(conf__span_of(value))) {
		bad(ld, k, value, "a pool name (letters, digits, '-', '_' and '.')");
		return;
	}
	*out = strdup(value);
	if (!*out)
		oom(ld);
}

static void string_key(struct loader *ld, const struct key_def *k, const char *value, size_t max,
		       char **out)
{
	size_t n = strlen(value);

	if (n == 0 || n > max) {
		bad(ld, k, value, "1 to %zu characters", max);
		return;
	}
	*out = strdup(value);
	if (!*out)
		oom(ld);
}

static void cidr_key(struct loader *ld, const struct key_def *k, const char *value,
		     struct conf_cidr_list *list)
{
	struct conf__span item;
	int rc = conf__cidr_list_append(list, conf__span_of(value), &item);

	if (rc == -ENOMEM) {
		oom(ld);
	} else if (rc) {
		fail(ld, ld->line,
		     "%s %s: expected networks like 10.0.0.0/8 or ::1 separated by "
		     "',' or ';', got '%.*s'%s",
		     ld->label, k->name, (int)item.len, item.p, item.len ? "" : " (an empty item)");
	}
}

/* Blank-separated words of `s` from *pos on. @return false at the end. */
static bool next_word(struct conf__span s, size_t *pos, struct conf__span *word)
{
	size_t i = *pos;

	while (i < s.len && conf__is_blank(s.p[i]))
		i++;
	if (i == s.len)
		return false;
	size_t start = i;
	while (i < s.len && !conf__is_blank(s.p[i]))
		i++;
	*word = (struct conf__span){s.p + start, i - start};
	*pos = i;
	return true;
}

static bool has_prefix(struct conf__span s, const char *prefix, struct conf__span *rest)
{
	size_t n = strlen(prefix);

	if (s.len < n || strncasecmp(s.p, prefix, n) != 0)
		return false;
	*rest = (struct conf__span){s.p + n, s.len - n};
	return true;
}

static int listen_key(struct loader *ld, const struct key_def *k, const char *value)
{
	struct conf_server *sv = &ld->c->server;
	struct conf_listen l = {.line = ld->line};
	struct conf__span v = conf__span_of(value), w, rest;
	size_t pos = 0;
	char addr[64];

	if (!next_word(v, &pos, &w) || conf__parse_addr_port(w, true, &l.addr)) {
		bad(ld, k, value,
		    "ADDRESS:PORT like 0.0.0.0:1080 or [::1]:1080, optionally "
		    "followed by pool=NAME or source=same");
		return -EINVAL;
	}
	while (next_word(v, &pos, &w)) {
		if (has_prefix(w, "pool=", &rest)) {
			if (l.pool || !valid_name(rest)) {
				fail(ld, ld->line,
				     "%s %s: expected one pool=NAME with a pool name, "
				     "got '%.*s'",
				     ld->label, k->name, (int)w.len, w.p);
				goto fail;
			}
			l.pool = dup_span(rest);
			if (!l.pool) {
				oom(ld);
				goto fail;
			}
		} else if (conf__span_eq(w, "source=same") && !l.source_same) {
			l.source_same = true;
		} else {
			fail(ld, ld->line,
			     "%s %s: expected pool=NAME or source=same after the "
			     "address (no blanks around '='), got '%.*s'",
			     ld->label, k->name, (int)w.len, w.p);
			goto fail;
		}
	}
	if (l.pool && l.source_same) {
		fail(ld, ld->line,
		     "%s %s: pool= and source=same exclude each other: a "
		     "source=same listener always egresses from the address it was "
		     "reached on",
		     ld->label, k->name);
		goto fail;
	}
	for (size_t i = 0; i < sv->n_listens; i++) {
		/* Port 0 asks the kernel for a free port: two of them never clash. */
		if (conf__addr_port(&l.addr) != 0 &&
		    conf__addr_equal(&sv->listens[i].addr, &l.addr)) {
			fail(ld, ld->line, "%s %s: %s is already a listener (line %u)", ld->label,
			     k->name, conf_addr_str((struct sockaddr *)&l.addr, addr, sizeof(addr)),
			     sv->listens[i].line);
			goto fail;
		}
	}
	void *grown = grow(sv->listens, &ld->listens_cap, sv->n_listens + 1, sizeof(l));
	if (!grown) {
		oom(ld);
		goto fail;
	}
	sv->listens = grown;
	sv->listens[sv->n_listens++] = l;
	return 0;
fail:
	free(l.pool);
	return -EINVAL;
}

/* `off`, `on` (with the log) or the path of a file of its own. */
static void access_log_key(struct loader *ld, const struct key_def *k, const char *value,
			   struct conf_server *sv)
{
	if (!conf_parse_bool(value, &sv->access_log))
		return;
	if (!*value || !visible_ascii(value) || strlen(value) > PATH_MAX) {
		bad(ld, k, value, "off | on | the path of a file (no blanks)");
		return;
	}
	sv->access_log = true;
	if (!(sv->access_log_file = strdup(value)))
		oom(ld);
}

static void server_key(struct loader *ld, const struct key_def *k, const char *value)
{
	static const char *const auth_words[] = {"none", "password", NULL};
	static const char *const bind_words[] = {"deny", "allow", NULL};
	static const char *const exhausted_words[] = {"reply", "refuse", NULL};
	static const char *const level_words[] = {"error", "warn", "info", "debug", NULL};
	static const char *const target_words[] = {"stderr", "syslog", "journald", NULL};
	static const char *const relay_words[] = {"copy", "splice", NULL};
	struct conf_server *sv = &ld->c->server;
	int i;

	switch (k->id) {
	case SK_LISTEN:
		listen_key(ld, k, value);
		break;
	case SK_ADMIN_LISTEN:
		if (!*value) {
			sv->admin_enabled = false;
		} else if (conf__parse_addr_port(conf__span_of(value), true, &sv->admin_listen)) {
			bad(ld, k, value,
			    "ADDRESS:PORT like 127.0.0.1:9180 or [::1]:9180, or "
			    "nothing to turn the admin listener off");
		} else {
			sv->admin_enabled = true;
		}
		break;
	case SK_ALLOW:
		cidr_key(ld, k, value, &sv->allow);
		break;
	case SK_DENY_DESTINATIONS:
		if (*value)
			cidr_key(ld, k, value, &sv->deny_destinations);
		break;
	case SK_AUTH:
		if ((i = choice(ld, k, value, auth_words)) >= 0)
			sv->auth = (enum conf_auth)i;
		break;
	case SK_DEFAULT_POOL:
		name_key(ld, k, value, &sv->default_pool);
		break;
	case SK_HANDSHAKE_TIMEOUT:
		duration_key(ld, k, value, false, &sv->handshake_timeout_ms);
		break;
	case SK_CONNECT_TIMEOUT:
		duration_key(ld, k, value, false, &sv->connect_timeout_ms);
		break;
	case SK_IDLE_TIMEOUT:
		duration_key(ld, k, value, true, &sv->idle_timeout_ms);
		break;
	case SK_SHUTDOWN_TIMEOUT:
		duration_key(ld, k, value, true, &sv->shutdown_timeout_ms);
		break;
	case SK_TCP_KEEPALIVE: {
		uint64_t ms = 0;
		duration_key(ld, k, value, true, &ms);
		if (!ld->rc && ms % 1000)
			bad(ld, k, value, "whole seconds, like 60s or 5m (0 = off)");
		else
			sv->tcp_keepalive_ms = ms;
		break;
	}
	case SK_MAX_CONNECTIONS:
		uint_key(ld, k, value, 1, UINT32_MAX, &sv->max_connections);
		break;
	case SK_MAX_CONN_PER_CLIENT:
		uint_key(ld, k, value, 0, UINT32_MAX, &sv->max_connections_per_client);
		break;
	case SK_BIND_UNLISTED:
		if ((i = choice(ld, k, value, bind_words)) >= 0)
			sv->bind_unlisted = (enum conf_bind_unlisted)i;
		break;
	case SK_ON_POOL_EXHAUSTED:
		if ((i = choice(ld, k, value, exhausted_words)) >= 0)
			sv->on_pool_exhausted = (enum conf_pool_exhausted)i;
		break;
	case SK_LOG_LEVEL:
		if ((i = choice(ld, k, value, level_words)) >= 0)
			sv->log_level = (enum conf_log_level)i;
		break;
	case SK_ACCESS_LOG:
		access_log_key(ld, k, value, sv);
		break;
	case SK_LOG_TARGET:
		if ((i = choice(ld, k, value, target_words)) >= 0)
			sv->log_target = (enum conf_log_target)i;
		break;
	case SK_LOG_TIMESTAMPS:
		bool_key(ld, k, value, &sv->log_timestamps);
		sv->log_timestamps_set = true;
		break;
	case SK_ALLOW_DESTINATIONS:
		if (*value)
			cidr_key(ld, k, value, &sv->allow_destinations);
		break;
	case SK_STALL_TIMEOUT:
		duration_key(ld, k, value, true, &sv->stall_timeout_ms);
		break;
	case SK_RELOAD_ON_CHANGE:
		bool_key(ld, k, value, &sv->reload_on_change);
		break;
	case SK_RELAY:
		if ((i = choice(ld, k, value, relay_words)) >= 0)
			sv->relay = (enum conf_relay)i;
		break;
	case SK_WORKERS: {
		uint64_t n;
		if (conf__span_eq(conf__span_of(value), "auto"))
			sv->workers = 0;
		else if (conf__parse_uint(conf__span_of(value), WORKERS_MAX, &n) || n < 1)
			bad(ld, k, value, "auto or an integer from 1 to %d", WORKERS_MAX);
		else
			sv->workers = (unsigned)n;
		break;
	}
	case SK_ADMIN_TOKEN:
		if (!*value)
			break;
		if (!visible_ascii(value) || strlen(value) > 1024)
			bad(ld, k, value, "a token of up to 1024 visible ASCII characters");
		else if (!(sv->admin_token = strdup(value)))
			oom(ld);
		break;
	case SK_USER:
		if (!*value)
			break;
		if (!visible_ascii(value))
			bad(ld, k, value, "a system user name");
		else if (!(sv->user = strdup(value)))
			oom(ld);
		break;
	}
}

/* Rule keys of `id`: which rule (0 unplumbed, 1 proxy_unhealthy) and its base key. */
static unsigned rule_of(unsigned id)
{
	return id >= K_UNHEALTHY ? 1 : 0;
}

static unsigned rule_base(unsigned id)
{
	return rule_of(id) ? K_UNHEALTHY : K_UNPLUMBED;
}

static bool rule_conflict(struct loader *ld, struct policy *pol, const struct key_def *k)
{
	unsigned base = rule_base(k->id);

	for (unsigned id = base; id < base + 3; id++) {
		if (id == k->id || !has(&pol->ks, id))
			continue;
		if (id != base && k->id != base)
			continue; /* .trigger with .duration is the normal case */
		fail(ld, ld->line,
		     "%s %s: conflicts with %s at line %u; a rule is either off or "
		     "has a trigger and a duration",
		     ld->label, k->name, source_keys[id].name, pol->ks.line[id]);
		return true;
	}
	return false;
}

static void policy_key(struct loader *ld, struct policy *pol, const struct key_def *k,
		       const char *value)
{
	static const char *const pick_words[] = {"hash", "random", NULL};
	struct conf__span v = conf__span_of(value);
	struct rule_draft *rule = &pol->rule[rule_of(k->id)];
	int i;

	switch (k->id) {
	case K_UNPLUMBED:
	case K_UNHEALTHY:
		if (!conf__span_eq(v, "off"))
			bad(ld, k, value,
			    "off (to configure the rule set %s.trigger and "
			    "%s.duration)",
			    k->name, k->name);
		else
			rule_conflict(ld, pol, k);
		break;
	case K_UNPLUMBED_TRIGGER:
	case K_UNHEALTHY_TRIGGER:
		if (rule_conflict(ld, pol, k))
			break;
		/* The window keeps each of the last N failure times: N is bounded
		 * (pool.h POOL_TRIGGER_MAX) so a typo cannot cost megabytes. */
		if (conf__parse_threshold(v, &rule->trigger) || rule->trigger.count > 10000)
			bad(ld, k, value,
			    "immediate or N/PERIOD like 3/1m, 10/s or 1,000/hr "
			    "(1 <= N <= 10000, PERIOD > 0)");
		break;
	case K_UNPLUMBED_DURATION:
	case K_UNHEALTHY_DURATION:
		if (rule_conflict(ld, pol, k))
			break;
		duration_key(ld, k, value, false, &rule->duration_ms);
		break;
	case K_MAX_CONNECTIONS:
		uint_key(ld, k, value, 0, UINT32_MAX, &pol->max_connections);
		break;
	case K_RATE:
		if (conf__span_eq(v, "unlimited"))
			pol->rate = (struct conf_threshold){0, 0};
		else if (conf__parse_rate(v, &pol->rate))
			bad(ld, k, value,
			    "N/PERIOD like 100/s, 10/5m or 1,000/hr (N >= 1, "
			    "PERIOD > 0), or unlimited");
		break;
	case K_RESUME:
		bool_key(ld, k, value, &pol->resume_when_plumbed);
		break;
	case K_PREFIX_PICK:
		if ((i = choice(ld, k, value, pick_words)) >= 0)
			pol->prefix_pick = (enum conf_prefix_pick)i;
		break;
	}
}

static void source_key(struct loader *ld, const struct key_def *k, const char *value)
{
	static const unsigned kind_keys[] = {K_ADDRESS, K_PREFIX, K_PROXY_SERVER};
	struct conf_source *s = &ld->c->sources[ld->idx];
	struct policy *pol = &ld->src_meta[ld->idx];
	struct conf__span v = conf__span_of(value);

	if (k->flags & KEY_POLICY) {
		policy_key(ld, pol, k, value);
		return;
	}
	switch (k->id) {
	case K_ADDRESS:
	case K_PREFIX:
	case K_PROXY_SERVER:
		for (size_t j = 0; j < 3; j++) {
			if (kind_keys[j] != k->id && has(&pol->ks, kind_keys[j])) {
				fail(ld, ld->line,
				     "%s %s: conflicts with %s at line %u; a source has "
				     "exactly one of address, prefix or "
				     "socks5_proxy_server",
				     ld->label, k->name, source_keys[kind_keys[j]].name,
				     pol->ks.line[kind_keys[j]]);
				return;
			}
		}
		if (k->id == K_ADDRESS) {
			if (conf__parse_addr(v, &s->addr))
				bad(ld, k, value,
				    "an IP address without port, like 192.0.2.10 or "
				    "2001:db8::10");
			s->kind = CONF_SOURCE_ADDRESS;
		} else if (k->id == K_PREFIX) {
			if (!memchr(value, '/', v.len) || conf__parse_cidr(v, &s->prefix) ||
			    s->prefix.prefix_len == 0)
				bad(ld, k, value, "a network like 2001:db8:1::/64 or 192.0.2.0/24");
			s->kind = CONF_SOURCE_PREFIX;
		} else {
			if (conf__parse_addr_port(v, true, &s->proxy_server) ||
			    conf__addr_port(&s->proxy_server) == 0)
				bad(ld, k, value,
				    "ADDRESS:PORT of a SOCKS5 proxy, like "
				    "198.51.100.7:1080 or [2001:db8::7]:1080");
			s->kind = CONF_SOURCE_PROXY;
		}
		break;
	case K_PROXY_SOURCE:
		if (conf__parse_addr(v, &s->proxy_source_address))
			bad(ld, k, value, "an IP address without port, like 203.0.113.5");
		else
			s->has_proxy_source_address = true;
		break;
	case K_PROXY_USERNAME:
		string_key(ld, k, value, USER_MAX_LEN, &s->proxy_username);
		break;
	case K_PROXY_PASSWORD:
		string_key(ld, k, value, USER_MAX_LEN, &s->proxy_password);
		break;
	case K_HEALTH_CHECK:
		duration_key(ld, k, value, true, &s->health_check_ms);
		break;
	case K_RESUME_HEALTHY:
		bool_key(ld, k, value, &s->resume_when_healthy);
		break;
	}
}

/* `source = ip-1 weight=2, 192.0.2.99; ip-3 priority=1` */
static void pool_sources_key(struct loader *ld, const struct key_def *k, const char *value)
{
	struct conf__span v = conf__span_of(value);
	struct sockaddr_storage ss;
	size_t start = 0;

	for (size_t i = 0; i <= v.len && !ld->rc; i++) {
		if (i < v.len && v.p[i] != ',' && v.p[i] != ';')
			continue;
		struct conf__span item = conf__trim((struct conf__span){v.p + start, i - start});
		struct conf__span w, ref, rest;
		uint64_t weight = 1, priority = 0;
		bool has_weight = false, has_priority = false;
		size_t pos = 0;
		start = i + 1;
		if (!next_word(item, &pos, &ref)) {
			bad(ld, k, value,
			    "sources separated by ',' or ';' (there is an empty item)");
			return;
		}
		if (!valid_name(ref) && conf__parse_addr(ref, &ss)) {
			fail(ld, ld->line,
			     "%s %s: expected a source name or an IP address, got "
			     "'%.*s'",
			     ld->label, k->name, (int)ref.len, ref.p);
			return;
		}
		while (next_word(item, &pos, &w)) {
			if (has_prefix(w, "weight=", &rest) && !has_weight) {
				has_weight = true;
				if (conf__parse_uint(rest, WEIGHT_MAX, &weight) == 0)
					continue;
			} else if (has_prefix(w, "priority=", &rest) && !has_priority) {
				has_priority = true;
				if (conf__parse_uint(rest, PRIORITY_MAX, &priority) == 0)
					continue;
			}
			fail(ld, ld->line,
			     "%s %s: expected weight=N (0..%d) or priority=N (0..%d) "
			     "once each after '%.*s' (no blanks around '='), got '%.*s'",
			     ld->label, k->name, WEIGHT_MAX, PRIORITY_MAX, (int)ref.len, ref.p,
			     (int)w.len, w.p);
			return;
		}
		add_pool_item(ld, ld->idx, ref, (uint32_t)weight, (uint32_t)priority, has_priority,
			      ld->line);
	}
}

static void pool_key(struct loader *ld, const struct key_def *k, const char *value)
{
	static const char *const strategy_words[] = {"round-robin", "hash", "failover", NULL};
	static const char *const hash_words[] = {"destination", "client", "username", NULL};
	struct conf_pool *p = &ld->c->pools[ld->idx];
	int i;

	switch (k->id) {
	case PK_STRATEGY:
		if ((i = choice(ld, k, value, strategy_words)) >= 0)
			p->strategy = (enum conf_strategy)i;
		break;
	case PK_HASH_KEY:
		if ((i = choice(ld, k, value, hash_words)) >= 0)
			p->hash_key = (enum conf_hash_key)i;
		break;
	case PK_SOURCE:
		pool_sources_key(ld, k, value);
		break;
	}
}

static void user_key(struct loader *ld, const struct key_def *k, const char *value)
{
	struct conf_user *u = &ld->c->users[ld->idx];
	struct keyset *ks = &ld->user_meta[ld->idx];
	unsigned other = k->id == UK_PASSWORD ? UK_PASSWORD_HASH : UK_PASSWORD;

	if (k->id != UK_POOL && has(ks, other)) {
		fail(ld, ld->line,
		     "%s %s: conflicts with %s at line %u; a user has either "
		     "password_hash or password",
		     ld->label, k->name, user_keys[other].name, ks->line[other]);
		return;
	}
	switch (k->id) {
	case UK_PASSWORD_HASH:
		if (value[0] != '$' || !visible_ascii(value) || strlen(value) > 512)
			bad(ld, k, value,
			    "a crypt(3) hash starting with '$', e.g. from "
			    "'mkpasswd -m yescrypt'");
		else if (!(u->password_hash = strdup(value)))
			oom(ld);
		break;
	case UK_PASSWORD:
		string_key(ld, k, value, USER_MAX_LEN, &u->password);
		break;
	case UK_POOL:
		name_key(ld, k, value, &u->pool);
		break;
	}
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;
	const struct key_def *tab;
	struct keyset *ks;
	size_t n;

	(void)section; /* on_read tracks sections: inih truncates long names */
	if (ld->rc)
		return 0;
	switch (ld->sect) {
	case SECT_SERVER:
		tab = server_keys;
		n = N_KEYS(server_keys);
		ks = &ld->server;
		break;
	case SECT_DEFAULTS:
		tab = source_keys;
		n = N_KEYS(source_keys);
		ks = &ld->defaults.ks;
		break;
	case SECT_SOURCE:
		tab = source_keys;
		n = N_KEYS(source_keys);
		ks = &ld->src_meta[ld->idx].ks;
		break;
	case SECT_POOL:
		tab = pool_keys;
		n = N_KEYS(pool_keys);
		ks = &ld->pool_meta[ld->idx].ks;
		break;
	case SECT_USER:
		tab = user_keys;
		n = N_KEYS(user_keys);
		ks = &ld->user_meta[ld->idx];
		break;
	default:
		fail(ld, ld->line,
		     "%s: key outside any section; put it under [server], "
		     "[defaults], [source \"NAME\"], [pool \"NAME\"] or [user \"NAME\"]",
		     name);
		return 0;
	}
	const struct key_def *k = lookup(tab, n, name);
	if (!k) {
		unknown_key(ld, name, tab, n);
		return 0;
	}
	if (ld->sect == SECT_DEFAULTS && !(k->flags & KEY_POLICY)) {
		fail(ld, ld->line, "%s %s: cannot be inherited; set it in each [source \"NAME\"]",
		     ld->label, name);
		return 0;
	}
	if (has(ks, k->id) && !(k->flags & KEY_REPEAT)) {
		fail(ld, ld->line,
		     "%s %s: set twice in this section (first at line %u); only "
		     "listen, allow, deny_destinations and source may repeat",
		     ld->label, name, ks->line[k->id]);
		return 0;
	}
	if (!has(ks, k->id))
		ks->line[k->id] = ld->line;
	ks->seen |= 1u << k->id;

	switch (ld->sect) {
	case SECT_SERVER:
		server_key(ld, k, value);
		break;
	case SECT_DEFAULTS:
		policy_key(ld, &ld->defaults, k, value);
		break;
	case SECT_SOURCE:
		source_key(ld, k, value);
		break;
	case SECT_POOL:
		pool_key(ld, k, value);
		break;
	case SECT_USER:
		user_key(ld, k, value);
		break;
	default:
		break;
	}
	return ld->rc == 0;
}

static int resolve_rule(struct loader *ld, size_t i, unsigned r, struct conf_suspend_rule *out)
{
	const struct policy *sp = &ld->src_meta[i], *dp = &ld->defaults;
	unsigned base = r ? K_UNHEALTHY : K_UNPLUMBED, trig = base + 1, dur = base + 2;
	const char *name = ld->c->sources[i].name;

	memset(out, 0, sizeof(*out));
	if (has(&sp->ks, base))
		return 0; /* `= off` in the source itself */
	if (has(&sp->ks, trig) || has(&sp->ks, dur)) {
		out->enabled = true;
		if (has(&sp->ks, trig))
			out->trigger = sp->rule[r].trigger;
		else if (has(&dp->ks, trig))
			out->trigger = dp->rule[r].trigger;
		if (has(&sp->ks, dur)) {
			out->duration_ms = sp->rule[r].duration_ms;
		} else if (has(&dp->ks, dur)) {
			out->duration_ms = dp->rule[r].duration_ms;
		} else {
			fail(ld, sp->ks.line[trig],
			     "[source \"%s\"] %s: a suspension rule needs a "
			     "duration; add %s here or in [defaults]",
			     name, source_keys[trig].name, source_keys[dur].name);
			return -EINVAL;
		}
		return 0;
	}
	if (has(&dp->ks, base))
		return 0;
	if (has(&dp->ks, trig) || has(&dp->ks, dur)) {
		out->enabled = true;
		if (has(&dp->ks, trig))
			out->trigger = dp->rule[r].trigger;
		if (!has(&dp->ks, dur)) {
			fail(ld, dp->ks.line[trig],
			     "[defaults] %s: a suspension rule needs a "
			     "duration; add %s to [defaults] (source \"%s\" "
			     "has none of its own)",
			     source_keys[trig].name, source_keys[dur].name, name);
			return -EINVAL;
		}
		out->duration_ms = dp->rule[r].duration_ms;
		return 0;
	}
	out->enabled = true; /* built in: immediate, 5m */
	out->duration_ms = DEFAULT_RULE_DURATION_MS;
	return 0;
}

static int resolve_policy(struct loader *ld, size_t i)
{
	struct conf_source *s = &ld->c->sources[i];
	const struct policy *sp = &ld->src_meta[i], *dp = &ld->defaults;

	if (resolve_rule(ld, i, 0, &s->unplumbed) || resolve_rule(ld, i, 1, &s->proxy_unhealthy))
		return -EINVAL;
#define INHERIT(id, field) (has(&sp->ks, id) ? sp->field : has(&dp->ks, id) ? dp->field : s->field)
	s->max_connections = INHERIT(K_MAX_CONNECTIONS, max_connections);
	s->rate = INHERIT(K_RATE, rate);
	s->resume_when_plumbed = INHERIT(K_RESUME, resume_when_plumbed);
	s->prefix_pick = INHERIT(K_PREFIX_PICK, prefix_pick);
#undef INHERIT
	return 0;
}

static int check_named_sources(struct loader *ld)
{
	static const unsigned proxy_only[] = {K_PROXY_SOURCE, K_PROXY_USERNAME, K_PROXY_PASSWORD,
					      K_HEALTH_CHECK, K_RESUME_HEALTHY};
	struct conf *c = ld->c;
	char addr[64];

	for (size_t i = 0; i < c->n_sources; i++) {
		const struct conf_source *s = &c->sources[i];
		const struct keyset *ks = &ld->src_meta[i].ks;
		if (s->kind == CONF_SOURCE_DEFAULT_ROUTE)
			continue;
		if (!has(ks, K_ADDRESS) && !has(ks, K_PREFIX) && !has(ks, K_PROXY_SERVER)) {
			fail(ld, s->line,
			     "[source \"%s\"]: needs one of address, prefix or "
			     "socks5_proxy_server",
			     s->name);
			return -EINVAL;
		}
		for (size_t j = 0; j < N_KEYS(proxy_only) && s->kind != CONF_SOURCE_PROXY; j++) {
			if (has(ks, proxy_only[j])) {
				fail(ld, ks->line[proxy_only[j]],
				     "[source \"%s\"] %s: only applies "
				     "with socks5_proxy_server",
				     s->name, source_keys[proxy_only[j]].name);
				return -EINVAL;
			}
		}
		if (has(ks, K_PROXY_USERNAME) != has(ks, K_PROXY_PASSWORD)) {
			unsigned set =
			    has(ks, K_PROXY_USERNAME) ? K_PROXY_USERNAME : K_PROXY_PASSWORD;
			unsigned missing =
			    set == K_PROXY_USERNAME ? K_PROXY_PASSWORD : K_PROXY_USERNAME;
			fail(ld, ks->line[set],
			     "[source \"%s\"] %s: needs %s too (RFC 1929 sends both)", s->name,
			     source_keys[set].name, source_keys[missing].name);
			return -EINVAL;
		}
		if (has(ks, K_PREFIX_PICK) && s->kind != CONF_SOURCE_PREFIX) {
			fail(ld, ks->line[K_PREFIX_PICK],
			     "[source \"%s\"] prefix_pick: only applies "
			     "with prefix =",
			     s->name);
			return -EINVAL;
		}
		for (size_t j = 0; j < i && s->kind == CONF_SOURCE_ADDRESS; j++) {
			const struct conf_source *o = &c->sources[j];
			if (o->kind == CONF_SOURCE_ADDRESS &&
			    conf__addr_same_host(&o->addr, &s->addr)) {
				fail(ld, ks->line[K_ADDRESS],
				     "[source \"%s\"] address: %s is already "
				     "the address of source \"%s\" (line %u); "
				     "a BIND to it could not tell them apart",
				     s->name,
				     conf_addr_str((const struct sockaddr *)&s->addr, addr,
						   sizeof(addr)),
				     o->name, o->line);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* A pool member: a source name, else an address (a named source with that
 * address, or the anonymous source of that address, made on first use). */
static int resolve_member(struct loader *ld, const struct pool_item *it)
{
	struct conf *c = ld->c;
	struct sockaddr_storage ss;
	char name[64];

	for (size_t j = 0; j < c->n_sources; j++)
		if (!c->sources[j].anonymous && strcmp(c->sources[j].name, it->text) == 0)
			return (int)j;
	if (conf__parse_addr(conf__span_of(it->text), &ss))
		return -ENOENT;
	for (size_t j = 0; j < c->n_sources; j++)
		if (c->sources[j].kind == CONF_SOURCE_ADDRESS &&
		    conf__addr_same_host(&c->sources[j].addr, &ss))
			return (int)j;
	int i = add_source(ld, conf_addr_str((const struct sockaddr *)&ss, name, sizeof(name)),
			   it->line);
	if (i < 0)
		return i;
	c->sources[i].anonymous = true;
	c->sources[i].addr = ss;
	return i;
}

static int resolve_pools(struct loader *ld)
{
	struct conf *c = ld->c;

	for (size_t p = 0; p < c->n_pools; p++) {
		struct pool_meta *pm = &ld->pool_meta[p];
		struct conf_pool *pool = &c->pools[p];
		uint64_t total = 0;
		if (!pm->n_items) {
			fail(ld, pool->line,
			     "[pool \"%s\"]: has no sources; add 'source = NAME' lines",
			     pool->name);
			return -EINVAL;
		}
		if (has(&pm->ks, PK_HASH_KEY) && pool->strategy != CONF_STRATEGY_HASH) {
			fail(ld, pm->ks.line[PK_HASH_KEY],
			     "[pool \"%s\"] hash_key: only applies with "
			     "strategy = hash",
			     pool->name);
			return -EINVAL;
		}
		pool->entries = calloc(pm->n_items, sizeof(*pool->entries));
		if (!pool->entries) {
			oom(ld);
			return -ENOMEM;
		}
		for (size_t k = 0; k < pm->n_items; k++) {
			const struct pool_item *it = &pm->items[k];
			if (it->has_priority && pool->strategy != CONF_STRATEGY_FAILOVER) {
				fail(ld, it->line,
				     "[pool \"%s\"] source: priority= (for '%s') only "
				     "applies with strategy = failover",
				     pool->name, it->text);
				return -EINVAL;
			}
			int i = resolve_member(ld, it);
			if (i == -ENOMEM)
				return i;
			if (i < 0) {
				fail(ld, it->line,
				     "[pool \"%s\"] source: unknown source '%s'; define "
				     "[source \"%s\"] or give an IP address",
				     pool->name, it->text, it->text);
				return -EINVAL;
			}
			pool = &c->pools[p];
			for (size_t e = 0; e < pool->n_entries; e++) {
				if (pool->entries[e].source == (size_t)i) {
					fail(ld, it->line,
					     "[pool \"%s\"] source: '%s' is already in this "
					     "pool (line %u, as source \"%s\")",
					     pool->name, it->text, pool->entries[e].line,
					     c->sources[i].name);
					return -EINVAL;
				}
			}
			pool->entries[pool->n_entries++] = (struct conf_pool_entry){
			    .source = (size_t)i,
			    .weight = it->weight,
			    .priority = it->priority,
			    .line = it->line,
			};
			total += it->weight;
		}
		if (total == 0 &&
		    warn(ld,
			 "%s:%u: [pool \"%s\"]: every source has weight 0; the pool can never "
			 "pick one",
			 ld->name, pool->line, pool->name))
			return -ENOMEM;
	}
	return 0;
}

/* No [pool] at all: pool `default` of every source, or of the default route. */
static int implicit_pool(struct loader *ld)
{
	struct conf *c = ld->c;

	if (c->n_sources == 0) {
		int i = add_source(ld, "default", 0);
		if (i < 0)
			return i;
		c->sources[i].kind = CONF_SOURCE_DEFAULT_ROUTE;
	}
	int p = add_pool(ld, "default", 0);
	if (p < 0)
		return p;
	c->pools[p].entries = calloc(c->n_sources, sizeof(*c->pools[p].entries));
	if (!c->pools[p].entries) {
		oom(ld);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n_sources; i++)
		c->pools[p].entries[c->pools[p].n_entries++] =
		    (struct conf_pool_entry){.source = i, .weight = 1};
	return 0;
}

static bool is_source_address(const struct conf *c, const struct sockaddr_storage *addr)
{
	for (size_t i = 0; i < c->n_sources; i++) {
		const struct conf_source *s = &c->sources[i];
		if (s->kind == CONF_SOURCE_ADDRESS && conf__addr_same_host(&s->addr, addr))
			return true;
		if (s->kind == CONF_SOURCE_PREFIX &&
		    conf__cidr_contains(&s->prefix, (const struct sockaddr *)addr))
			return true;
	}
	return false;
}

static int add_listen(struct loader *ld, const char *text)
{
	struct conf_server *sv = &ld->c->server;

	GROW(ld, sv->listens, ld->listens_cap, sv->n_listens + 1);
	struct conf_listen *l = &sv->listens[sv->n_listens];
	memset(l, 0, sizeof(*l));
	if (conf__parse_addr_port(conf__span_of(text), true, &l->addr))
		return -EINVAL;
	sv->n_listens++;
	return 0;
}

static int resolve_server(struct loader *ld)
{
	struct conf *c = ld->c;
	struct conf_server *sv = &c->server;
	char addr[64];

	if (sv->default_pool) {
		if (conf_find_pool(c, sv->default_pool) < 0) {
			fail(ld, ld->server.line[SK_DEFAULT_POOL],
			     "[server] default_pool: no pool "
			     "named '%s'",
			     sv->default_pool);
			return -EINVAL;
		}
	} else {
		const char *name = conf_find_pool(c, "default") >= 0 ? "default" : c->pools[0].name;
		if (!(sv->default_pool = strdup(name))) {
			oom(ld);
			return -ENOMEM;
		}
	}
	if (sv->n_listens == 0 &&
	    (add_listen(ld, "127.0.0.1:1080") || add_listen(ld, "[::1]:1080")))
		return ld->rc ? ld->rc : -EINVAL;
	for (size_t i = 0; i < sv->n_listens; i++) {
		const struct conf_listen *l = &sv->listens[i];
		conf_addr_str((const struct sockaddr *)&l->addr, addr, sizeof(addr));
		if (l->pool && conf_find_pool(c, l->pool) < 0) {
			fail(ld, l->line, "[server] listen: no pool named '%s' (for %s)", l->pool,
			     addr);
			return -EINVAL;
		}
		if (l->source_same && !conf__addr_is_any(&l->addr) &&
		    !is_source_address(c, &l->addr)) {
			fail(ld, l->line,
			     "[server] listen: source=same on %s needs that address to be "
			     "a source (or listen on 0.0.0.0 / [::])",
			     addr);
			return -EINVAL;
		}
		if (sv->admin_enabled && conf__addr_port(&l->addr) != 0 &&
		    conf__addr_equal(&sv->admin_listen, &l->addr)) {
			fail(ld, l->line ? l->line : ld->server.line[SK_ADMIN_LISTEN],
			     "[server] listen: %s is also admin_listen", addr);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < c->n_users; i++) {
		const struct conf_user *u = &c->users[i];
		const struct keyset *ks = &ld->user_meta[i];
		if (!u->password_hash && !u->password) {
			fail(ld, u->line, "[user \"%s\"]: needs password_hash (or password)",
			     u->name);
			return -EINVAL;
		}
		if (u->pool && conf_find_pool(c, u->pool) < 0) {
			fail(ld, ks->line[UK_POOL], "[user \"%s\"] pool: no pool named '%s'",
			     u->name, u->pool);
			return -EINVAL;
		}
		if (u->password &&
		    warn(ld,
			 "%s:%u: [user \"%s\"] password: stored in plain text; prefer "
			 "password_hash (mkpasswd -m yescrypt)",
			 ld->name, ks->line[UK_PASSWORD], u->name))
			return -ENOMEM;
	}
	if (sv->auth == CONF_AUTH_PASSWORD && c->n_users == 0) {
		fail(ld, ld->server.line[SK_AUTH],
		     "[server] auth: password needs at least one "
		     "[user \"NAME\"] section");
		return -EINVAL;
	}
	if (sv->auth == CONF_AUTH_NONE && c->n_users > 0 &&
	    warn(ld, "%s:%u: [user \"%s\"]: users are ignored while [server] auth = none", ld->name,
		 c->users[0].line, c->users[0].name))
		return -ENOMEM;
	if (!has(&ld->server, SK_ALLOW)) {
		int rc =
		    conf__cidr_list_append(&sv->allow, conf__span_of("127.0.0.0/8, ::1/128"), NULL);
		if (rc) {
			oom(ld);
			return rc;
		}
	}
	return 0;
}

/* `source = ip-1 ; ip-2`: ip-2 is a comment to inih; warn when it names a
 * source or is an address. */
static int warn_lost_items(struct loader *ld)
{
	for (size_t i = 0; i < ld->n_lost; i++) {
		const struct lost_item *it = &ld->lost[i];
		struct sockaddr_storage ss;
		if (conf_find_source(ld->c, it->token) < 0 &&
		    conf__parse_addr(conf__span_of(it->token), &ss) != 0)
			continue;
		if (warn(ld,
			 "%s:%u: [pool \"%s\"] source: ' ;' starts a comment, so '%s' is not in "
			 "the pool; a list item probably lost: write `a; b` without a blank before "
			 "';'",
			 ld->name, it->line, ld->c->pools[it->pool].name, it->token))
			return -ENOMEM;
	}
	return 0;
}

/* Whether a `source=same` listener can egress from source `s`: one on a
 * wildcard address from any, one on an address from the source of it. */
static bool same_listener_uses(const struct conf *c, const struct conf_source *s)
{
	for (size_t i = 0; i < c->server.n_listens; i++) {
		const struct conf_listen *l = &c->server.listens[i];
		if (!l->source_same)
			continue;
		if (conf__addr_is_any(&l->addr) ||
		    (s->kind == CONF_SOURCE_ADDRESS && conf__addr_same_host(&s->addr, &l->addr)) ||
		    (s->kind == CONF_SOURCE_PREFIX &&
		     conf__cidr_contains(&s->prefix, (const struct sockaddr *)&l->addr)))
			return true;
	}
	return false;
}

/* A named source in no pool is picked by no request: only a KumoMTA BIND
 * can use it (or a source=same listener, which is then what it is for), and
 * that is seldom what was meant. */
static int warn_unused_sources(struct loader *ld)
{
	const struct conf *c = ld->c;

	for (size_t i = 0; i < c->n_sources; i++) {
		bool used = c->sources[i].anonymous || same_listener_uses(c, &c->sources[i]);
		for (size_t p = 0; p < c->n_pools && !used; p++)
			for (size_t e = 0; e < c->pools[p].n_entries && !used; e++)
				used = c->pools[p].entries[e].source == i;
		if (!used &&
		    warn(ld,
			 "%s:%u: [source \"%s\"]: no pool uses this source; only BIND "
			 "and source=same requests can reach it; add it to a pool with "
			 "'source = %s'",
			 ld->name, c->sources[i].line, c->sources[i].name, c->sources[i].name))
			return -ENOMEM;
	}
	return 0;
}

static bool has_secrets(const struct conf *c)
{
	if (c->server.admin_token && c->server.admin_token[0])
		return true;
	for (size_t i = 0; i < c->n_users; i++)
		if (c->users[i].password || c->users[i].password_hash)
			return true;
	for (size_t i = 0; i < c->n_sources; i++)
		if (c->sources[i].proxy_password)
			return true;
	return false;
}

/* `user =` drops privileges after start, and a reload reads the file again
 * as that user: say so now when it could not. */
static int warn_user_cannot_read(struct loader *ld, const char *user)
{
	struct passwd pwbuf, *pw = NULL;
	char buf[4096], blocker[PATH_MAX];
	gid_t groups[256];
	int n = (int)(sizeof(groups) / sizeof(groups[0]));

	if (getpwnam_r(user, &pwbuf, buf, sizeof(buf), &pw) != 0 || !pw)
		return warn(ld, "%s:%u: [server] user: no user named '%s' on this host", ld->name,
			    ld->server.line[SK_USER], user);
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		n = 0; /* more than 256 groups: judge by the primary one */
	struct conf__cred cred = {pw->pw_uid, pw->pw_gid, groups, (size_t)n};
	if (conf__may_read(ld->c->path, &cred, blocker, sizeof(blocker)) != 0)
		return 0;
	struct stat st;
	bool dir = stat(blocker, &st) == 0 && S_ISDIR(st.st_mode);
	struct group *gr = getgrgid(pw->pw_gid);
	char fix[3 * PATH_MAX];
	if (dir)
		snprintf(fix, sizeof(fix), "let it search %s (chmod o+x, or a group it is in)",
			 blocker);
	else
		snprintf(fix, sizeof(fix), "e.g. chgrp %s %s && chmod 0640 %s",
			 gr ? gr->gr_name : "GROUP", blocker, blocker);
	return warn(ld,
		    "%s:%u: [server] user: '%s' (uid %u) cannot read %s, so a reload (SIGHUP) "
		    "will fail; %s",
		    ld->name, ld->server.line[SK_USER], user, (unsigned)pw->pw_uid,
		    dir ? "the file: a directory on its path is closed to it" : blocker, fix);
}

/* What only the file itself can tell: who may read it. */
static int warn_file_access(struct loader *ld)
{
	const struct conf *c = ld->c;

	if (!ld->has_stat)
		return 0;
	if ((ld->st.st_mode & S_IROTH) && has_secrets(c) &&
	    warn(ld,
		 "%s: every user of this host can read it (mode %04o) and it holds passwords or "
		 "tokens; chmod o-r %s",
		 ld->name, (unsigned)(ld->st.st_mode & 07777), ld->name))
		return -ENOMEM;
	if (c->server.user && warn_user_cannot_read(ld, c->server.user))
		return -ENOMEM;
	return 0;
}

static int resolve(struct loader *ld)
{
	int rc = check_named_sources(ld);

	if (!rc)
		rc = ld->c->n_pools ? resolve_pools(ld) : implicit_pool(ld);
	for (size_t i = 0; !rc && i < ld->c->n_sources; i++)
		rc = resolve_policy(ld, i);
	if (!rc)
		rc = resolve_server(ld);
	if (!rc)
		rc = warn_lost_items(ld);
	if (!rc)
		rc = warn_unused_sources(ld);
	if (!rc)
		rc = warn_file_access(ld);
	return rc;
}

const char *conf_key_name(const char *section, size_t i)
{
	const struct key_def *tab = NULL;
	size_t n = 0;

	if (!section)
		return NULL;
	if (!strcmp(section, "server")) {
		tab = server_keys;
		n = N_KEYS(server_keys);
	} else if (!strcmp(section, "source")) {
		tab = source_keys;
		n = N_KEYS(source_keys);
	} else if (!strcmp(section, "defaults")) {
		/* [defaults] takes the policy keys of [source], in their order. */
		for (size_t j = 0; j < N_KEYS(source_keys); j++)
			if ((source_keys[j].flags & KEY_POLICY) && i-- == 0)
				return source_keys[j].name;
		return NULL;
	} else if (!strcmp(section, "pool")) {
		tab = pool_keys;
		n = N_KEYS(pool_keys);
	} else if (!strcmp(section, "user")) {
		tab = user_keys;
		n = N_KEYS(user_keys);
	}
	return i < n ? tab[i].name : NULL;
}

static void set_server_defaults(struct conf_server *sv)
{
	struct sockaddr_in *admin = (struct sockaddr_in *)&sv->admin_listen;

	sv->admin_enabled = true;
	admin->sin_family = AF_INET;
	admin->sin_port = htons(9180);
	admin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sv->auth = CONF_AUTH_NONE;
	sv->handshake_timeout_ms = 10 * 1000;
	sv->connect_timeout_ms = 30 * 1000;
	sv->idle_timeout_ms = 10 * 60 * 1000;
	sv->max_connections = 20000;
	sv->bind_unlisted = CONF_BIND_UNLISTED_DENY;
	sv->tcp_keepalive_ms = 5 * 60 * 1000;
	sv->on_pool_exhausted = CONF_POOL_EXHAUSTED_REPLY;
	sv->log_level = CONF_LOG_INFO;
	sv->access_log = false;
	sv->workers = 0;
	sv->max_connections_per_client = 0;
	sv->shutdown_timeout_ms = 30 * 1000;
	sv->log_target = CONF_LOG_TARGET_STDERR;
	sv->log_timestamps = true;
	sv->stall_timeout_ms = 5 * 60 * 1000;
	sv->relay = CONF_RELAY_SPLICE;
}

static int loader_init(struct loader *ld, const char *name, char *err, size_t errlen)
{
	memset(ld, 0, sizeof(*ld));
	ld->name = name;
	ld->err = err;
	ld->errlen = errlen;
	if (err && errlen)
		err[0] = '\0';
	ld->c = calloc(1, sizeof(*ld->c));
	if (!ld->c || !(ld->c->path = strdup(name))) {
		oom(ld);
		return -ENOMEM;
	}
	set_server_defaults(&ld->c->server);
	return 0;
}

/* Resolves, hands the conf to *out on success, frees everything else. */
static int loader_finish(struct loader *ld, struct conf **out)
{
	if (!ld->rc)
		resolve(ld);
	int rc = ld->rc;
	if (!rc) {
		*out = ld->c;
		ld->c = NULL;
	}
	for (size_t p = 0; p < ld->pool_meta_cap && ld->pool_meta; p++) {
		for (size_t k = 0; k < ld->pool_meta[p].n_items; k++)
			free(ld->pool_meta[p].items[k].text);
		free(ld->pool_meta[p].items);
	}
	free(ld->pool_meta);
	free(ld->src_meta);
	free(ld->user_meta);
	free(ld->lost);
	free(ld->lbuf);
	conf_free(ld->c);
	return rc;
}

static void parse(struct loader *ld)
{
	int r = ini_parse_stream(on_read, ld, on_key, ld);

	if (r == -2)
		oom(ld);
	else if (r != 0 && !ld->rc)
		fail(ld, r > 0 ? (unsigned)r : 0, "syntax error");
}

static int bad_args(char *err, size_t errlen)
{
	if (err && errlen)
		snprintf(err, errlen, "conf: invalid argument");
	return -EINVAL;
}

int conf_load_file(const char *path, struct conf **out, char *err, size_t errlen)
{
	struct loader ld;

	if (!path || !out)
		return bad_args(err, errlen);
	FILE *fp = fopen(path, "r");
	if (!fp) {
		int e = errno;
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
		return -e;
	}
	if (loader_init(&ld, path, err, errlen) == 0) {
		ld.fp = fp;
		ld.has_stat = fstat(fileno(fp), &ld.st) == 0;
		parse(&ld);
	}
	fclose(fp);
	return loader_finish(&ld, out);
}

int conf_load_string(const char *text, const char *name, struct conf **out, char *err,
		     size_t errlen)
{
	struct loader ld;

	if (!text || !out)
		return bad_args(err, errlen);
	if (loader_init(&ld, name ? name : "<string>", err, errlen) == 0) {
		ld.pos = text;
		parse(&ld);
	}
	return loader_finish(&ld, out);
}

int conf_load_default(const char *env_sources, struct conf **out, char *err, size_t errlen)
{
	struct conf__span env = conf__span_of(env_sources ? env_sources : "");
	struct sockaddr_storage *seen = NULL;
	size_t n_seen = 0, seen_cap = 0, start = 0;
	struct loader ld;
	char addr[64];
	int p;

	if (!out)
		return bad_args(err, errlen);
	if (loader_init(&ld, "<default>", err, errlen) || add_source(&ld, "default", 0) < 0 ||
	    (p = add_pool(&ld, "default", 0)) < 0 ||
	    add_pool_item(&ld, (size_t)p, conf__span_of("default"), 1, 0, false, 0))
		return loader_finish(&ld, out);
	ld.c->sources[0].kind = CONF_SOURCE_DEFAULT_ROUTE;
	ld.name = "SOCKPOOL_SOURCES"; /* errors below are about the variable */
	for (size_t i = 0; i <= env.len && conf__trim(env).len && !ld.rc; i++) {
		if (i < env.len && env.p[i] != ',')
			continue;
		struct conf__span item = conf__trim((struct conf__span){env.p + start, i - start});
		struct sockaddr_storage ss;
		start = i + 1;
		if (conf__parse_addr(item, &ss)) {
			fail(&ld, 0,
			     "expected IP addresses separated by ',', got "
			     "'%.*s'",
			     (int)item.len, item.p);
			break;
		}
		conf_addr_str((const struct sockaddr *)&ss, addr, sizeof(addr));
		for (size_t j = 0; j < n_seen && !ld.rc; j++)
			if (conf__addr_same_host(&seen[j], &ss))
				fail(&ld, 0, "%s is listed twice", addr);
		void *grown = grow(seen, &seen_cap, n_seen + 1, sizeof(*seen));
		if (!grown) {
			oom(&ld);
			break;
		}
		seen = grown;
		seen[n_seen++] = ss;
		add_pool_item(&ld, (size_t)p, conf__span_of(addr), 1, 0, false, 0);
	}
	free(seen);
	ld.name = "<default>";
	return loader_finish(&ld, out);
}
