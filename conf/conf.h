/* conf: INI loading, value parsers and validation for sockpool.
 *
 * A loaded configuration is one immutable `struct conf`; every string and
 * array in it is owned by it and freed by conf_free(). Nothing here keeps
 * global state, so two configurations can live side by side during a reload.
 *
 * How files are read (SPEC 2; where SPEC is silent, these are the rules):
 * - Comments: a line starting with `;` or `#`, or ` ;` (blank first) after a
 *   value, also right after `=` (`admin_token =   ; none` is empty).
 * - A line may hold at most 197 characters once its comment and surrounding
 *   blanks are gone (inih's 200-byte buffer); longer is an error, never cut.
 * - Leading blanks are ignored: an indented line is an ordinary line, never a
 *   continuation of the previous value. CRLF and a UTF-8 BOM are fine.
 * - Keys are case-sensitive, keyword values (`none`, `hash`, `yes`, units)
 *   are not. Unknown sections or keys, a key twice in one section (except
 *   listen, allow, deny_destinations and source, which accumulate) and a
 *   section twice are errors. The first error stops loading.
 * - Names of sources and pools: 1..64 of [A-Za-z0-9_.-]; user names: 1..255
 *   visible bytes. `[source "a"]` and `[source a]` are the same.
 * - CIDRs: host bits beyond the prefix are masked silently (10.1.2.3/8 is
 *   10.0.0.0/8); networks inside ::ffff:0:0/96 are stored as IPv4.
 * - Pool entries: `NAME_OR_ADDRESS [weight=N] [priority=N]`, weight 0..65535
 *   (default 1), priority 0..65535 (default 0) and only with
 *   `strategy = failover`; `hash_key` only with `strategy = hash`.
 * - Suspension rules (unplumbed, proxy_unhealthy) resolve per source: the
 *   source's own keys, then [defaults], then the built-in rule: enabled,
 *   trigger immediate, duration 5m. `X = off` (source or [defaults]) disables
 *   it; a trigger whose chain has no duration is an error.
 * - [defaults] may hold only the per-source policy keys and applies to every
 *   source, defined before or after it, anonymous ones included.
 * - `rate = unlimited` overrides an inherited rate; `max_connections = 0` too.
 * - handshake_timeout and connect_timeout must be > 0; tcp_keepalive is 0 or
 *   whole seconds; [server] max_connections is >= 1.
 * - `listen = ADDR:PORT source=same` cannot carry pool=; on a specific address
 *   that address must belong to a source (address or prefix).
 */
#ifndef SOCKPOOL_CONF_H
#define SOCKPOOL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* Longest error message conf_load_* writes (file:line: key: what is wrong). */
#define CONF_ERR_MAX 512

/* An IP network: family AF_INET or AF_INET6, address in network order. */
struct conf_cidr {
	int family;
	uint8_t addr[16];
	uint8_t prefix_len;
};

struct conf_cidr_list {
	struct conf_cidr *items;
	size_t count;
};

/* Suspension trigger: count == 0 means `immediate`. */
struct conf_threshold {
	uint32_t count;
	uint64_t period_ms;
};

struct conf_suspend_rule {
	bool enabled; /* false: rule off (`X = off` in the source or [defaults]);
		       * a rule nobody configures is on: immediate, 5m */
	struct conf_threshold trigger;
	uint64_t duration_ms; /* > 0 whenever enabled */
};

struct conf_listen {
	struct sockaddr_storage addr;
	char *pool;	  /* `pool=NAME`, NULL = default */
	bool source_same; /* `source=same` */
	unsigned line;
};

enum conf_source_kind {
	CONF_SOURCE_DEFAULT_ROUTE, /* no source binding: the kernel picks */
	CONF_SOURCE_ADDRESS,	   /* `address =` */
	CONF_SOURCE_PREFIX,	   /* `prefix =` */
	CONF_SOURCE_PROXY,	   /* `socks5_proxy_server =` */
};

enum conf_prefix_pick {
	CONF_PREFIX_PICK_HASH,
	CONF_PREFIX_PICK_RANDOM,
};

struct conf_source {
	char *name;	/* section name, or for bare sources the address as
			 * inet_ntop writes it (`2001:db8::11`) */
	unsigned line;	/* where it was defined */
	bool anonymous; /* defined by a bare address in a pool */
	enum conf_source_kind kind;
	struct sockaddr_storage addr; /* ADDRESS: port 0 */
	struct conf_cidr prefix;      /* PREFIX */
	enum conf_prefix_pick prefix_pick;
	struct sockaddr_storage proxy_server; /* PROXY */
	bool has_proxy_source_address;
	struct sockaddr_storage proxy_source_address;
	char *proxy_username; /* NULL when unset */
	char *proxy_password;
	struct conf_suspend_rule unplumbed;
	struct conf_suspend_rule proxy_unhealthy;
	uint32_t max_connections;   /* 0 = unlimited */
	struct conf_threshold rate; /* count 0 = unlimited; else count >= 1, period > 0 */
	bool resume_when_plumbed;
	uint64_t health_check_ms; /* PROXY: probe period, 0 = off */
	bool resume_when_healthy; /* PROXY: a passing probe ends proxy_unhealthy */
};

enum conf_strategy {
	CONF_STRATEGY_ROUND_ROBIN,
	CONF_STRATEGY_HASH,
	CONF_STRATEGY_FAILOVER,
};

enum conf_hash_key {
	CONF_HASH_KEY_DESTINATION,
	CONF_HASH_KEY_CLIENT,
	CONF_HASH_KEY_USERNAME,
};

struct conf_pool_entry {
	size_t source;	   /* index into conf->sources */
	uint32_t weight;   /* 0 = excluded; at most 65535 */
	uint32_t priority; /* failover tier, lower first; default 0; at most 65535 */
	unsigned line;
};

struct conf_pool {
	char *name;
	unsigned line;
	enum conf_strategy strategy;
	enum conf_hash_key hash_key;
	struct conf_pool_entry *entries;
	size_t n_entries;
};

struct conf_user {
	char *name;
	char *password_hash; /* crypt(3) string, or NULL */
	char *password;	     /* plain password, or NULL (warned at load) */
	char *pool;	     /* NULL = listener's or default pool */
	unsigned line;
};

enum conf_auth { CONF_AUTH_NONE, CONF_AUTH_PASSWORD };
enum conf_bind_unlisted { CONF_BIND_UNLISTED_DENY, CONF_BIND_UNLISTED_ALLOW };
enum conf_pool_exhausted { CONF_POOL_EXHAUSTED_REPLY, CONF_POOL_EXHAUSTED_REFUSE };
enum conf_log_level { CONF_LOG_ERROR, CONF_LOG_WARN, CONF_LOG_INFO, CONF_LOG_DEBUG };
enum conf_log_target { CONF_LOG_TARGET_STDERR, CONF_LOG_TARGET_SYSLOG, CONF_LOG_TARGET_JOURNALD };
enum conf_relay { CONF_RELAY_COPY, CONF_RELAY_SPLICE };

struct conf_server {
	struct conf_listen *listens;
	size_t n_listens;
	bool admin_enabled;
	struct sockaddr_storage admin_listen;
	struct conf_cidr_list allow; /* default: 127.0.0.0/8, ::1/128 */
	enum conf_auth auth;
	char *default_pool;		       /* never NULL after load */
	uint64_t handshake_timeout_ms;	       /* default 10s */
	uint64_t connect_timeout_ms;	       /* default 30s */
	uint64_t idle_timeout_ms;	       /* default 10m; 0 = none */
	uint32_t max_connections;	       /* default 20000 */
	enum conf_bind_unlisted bind_unlisted; /* default deny */
	struct conf_cidr_list deny_destinations;
	uint64_t tcp_keepalive_ms; /* default 5m; 0 = off */
	enum conf_pool_exhausted on_pool_exhausted;
	enum conf_log_level log_level;		  /* default info */
	enum conf_log_target log_target;	  /* default stderr */
	bool log_timestamps;			  /* RFC 3339 times on stderr lines */
	bool log_timestamps_set;		  /* false: not configured, on unless stderr
						   * is the journal (JOURNAL_STREAM) */
	bool access_log;			  /* `on` or a FILE */
	char *access_log_file;			  /* NULL: with the log (access_log = on) */
	unsigned workers;			  /* 0 = auto */
	uint32_t max_connections_per_client;	  /* default 0 = unlimited */
	struct conf_cidr_list allow_destinations; /* exceptions to the destination policy */
	uint64_t stall_timeout_ms;		  /* default 5m; 0 = off */
	bool reload_on_change;			  /* default no */
	enum conf_relay relay;			  /* default splice */
	uint64_t shutdown_timeout_ms;		  /* default 30s */
	char *admin_token;			  /* NULL when empty */
	char *user;				  /* NULL when empty */
};

struct conf {
	char *path; /* file it came from, or "<default>"; for strings the name
		     * given to conf_load_string, "<string>" without one */
	struct conf_server server;
	struct conf_source *sources;
	size_t n_sources;
	struct conf_pool *pools;
	size_t n_pools;
	struct conf_user *users;
	size_t n_users;
	char **warnings; /* messages worth logging at WARN after load */
	size_t n_warnings;
};

/* Load and validate an INI file.
 * @return 0 and *out (free with conf_free), or -errno with a message in err
 *         (`file:line: [section] key: what was expected, got 'value'`;
 *         secrets are never echoed): -EINVAL for the content, -ENOMEM,
 *         -ENOENT etc. for I/O. On error *out is left untouched. */
int conf_load_file(const char *path, struct conf **out, char *err, size_t errlen);

/* Same, from text in memory; `name` stands for the file name in errors. */
int conf_load_string(const char *text, const char *name, struct conf **out, char *err,
		     size_t errlen);

/* The embedded default (SPEC 2): 127.0.0.1:1080 and [::1]:1080, admin on
 * 127.0.0.1:9180, loopback clients, pool `default` = the default route
 * (source `default`, CONF_SOURCE_DEFAULT_ROUTE) plus one anonymous source per
 * address in `env_sources` (comma separated, may be NULL). A bad or repeated
 * address is -EINVAL with a message naming SOCKPOOL_SOURCES. */
int conf_load_default(const char *env_sources, struct conf **out, char *err, size_t errlen);

void conf_free(struct conf *conf);

/* The keys the loader accepts in a section kind: "server", "defaults",
 * "source", "pool" or "user". @return the i-th key name (static storage),
 * or NULL past the last one or for an unknown kind. */
const char *conf_key_name(const char *section, size_t i);

/* Print the resolved listeners, sources and pools (for `--check`). */
void conf_dump(const struct conf *conf, FILE *out);

/* Lookups by name. @return index, or -ENOENT (-EINVAL for NULL arguments). */
int conf_find_source(const struct conf *conf, const char *name);
int conf_find_pool(const struct conf *conf, const char *name);
int conf_find_user(const struct conf *conf, const char *name);

/* Value parsers, each strict about the whole string (surrounding blanks are
 * allowed). @return 0, or -EINVAL when the text is not of the form. */
int conf_parse_duration(const char *text, uint64_t *ms); /* `5m`, `90s`, `5 mins`, `0` */
int conf_parse_threshold(const char *text,
			 struct conf_threshold *out); /* `immediate`, `1,000/hr` */
int conf_parse_bool(const char *text, bool *out);     /* yes/no, true/false, on/off, 1/0 */
int conf_parse_uint(const char *text, uint64_t max, uint64_t *out); /* allows `,` and `_` */
/* `1.2.3.4:80`, `[::1]:80`; with need_port false a bare address (port 0) too. */
int conf_parse_addr_port(const char *text, bool need_port, struct sockaddr_storage *out);
int conf_parse_addr(const char *text, struct sockaddr_storage *out); /* no port */
int conf_parse_cidr(const char *text, struct conf_cidr *out);	     /* bare address = host route */
/* `,`/`;` separated, at least one item, no empty ones. On success out->items is
 * malloc'd: the caller frees it with free(). -ENOMEM is possible. */
int conf_parse_cidr_list(const char *text, struct conf_cidr_list *out);

/* Whether `addr` (AF_INET/AF_INET6 sockaddr; v4-mapped v6 counts as v4)
 * falls in any network of the list. */
bool conf_cidr_list_match(const struct conf_cidr_list *list, const struct sockaddr *addr);

/* Format an address as `1.2.3.4:80` / `[::1]:80`; with port 0 as `1.2.3.4` /
 * `::1`. 64 bytes always suffice. @return buf, or NULL when buf/len is 0. */
const char *conf_addr_str(const struct sockaddr *addr, char *buf, size_t len);

/* The 16-byte form of an IP address for comparing and hashing: IPv6 as it
 * is, IPv4 as ::ffff:a.b.c.d (so a v4-mapped IPv6 address keys as its IPv4).
 * @return 0, or -EINVAL (key all zero) for NULL or another family. */
int conf_addr_key(const struct sockaddr *addr, uint8_t key[16]);

#endif
