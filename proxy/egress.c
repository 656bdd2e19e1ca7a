/* egress: pools from configuration, pool events to logs, and binding the
 * outbound socket to the chosen source. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "egress.h"
#include "log.h"
#include "pool.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_FREEBIND
#define IP_FREEBIND 15
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

/* ---- addresses ---- */

/* The 16-byte form of an address (IPv4 as v4-mapped) for comparisons. */
static bool addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	if (sa->sa_family == AF_INET) {
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return true;
	}
	return false;
}

int egress_find_source(const struct conf *conf, const struct sockaddr *addr)
{
	uint8_t want[16], have[16];

	if (!addr_key(addr, want))
		return -ENOENT;
	for (size_t i = 0; i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		if (cs->kind != CONF_SOURCE_ADDRESS)
			continue;
		if (addr_key((const struct sockaddr *)&cs->addr, have) && memcmp(want, have, 16) == 0)
			return (int)i;
	}
	return -ENOENT;
}

bool egress_pool_has(const struct conf *conf, size_t pool, size_t src)
{
	if (pool >= conf->n_pools)
		return false;
	for (size_t i = 0; i < conf->pools[pool].n_entries; i++) {
		const struct conf_pool_entry *e = &conf->pools[pool].entries[i];
		if (e->source == src && e->weight > 0)
			return true;
	}
	return false;
}

bool egress_source_fits(const struct conf_source *cs, int family)
{
	switch (cs->kind) {
	case CONF_SOURCE_ADDRESS:
		return cs->addr.ss_family == family;
	case CONF_SOURCE_PREFIX:
		return cs->prefix.family == family;
	default:
		return true;
	}
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* An address inside a prefix source: stable per key, or random. */
static void prefix_address(const struct conf_source *cs, const void *key, size_t keylen,
			   struct sockaddr_storage *out)
{
	const struct conf_cidr *p = &cs->prefix;
	size_t nbytes = p->family == AF_INET ? 4 : 16;
	uint8_t addr[16], fill[16];
	uint64_t h;

	memcpy(addr, p->addr, nbytes);
	if (cs->prefix_pick == CONF_PREFIX_PICK_RANDOM || !key) {
		if (getrandom(fill, sizeof fill, 0) != (ssize_t)sizeof fill)
			memset(fill, 0x5a, sizeof fill);
	} else {
		h = fnv1a(key, keylen);
		for (size_t i = 0; i < 16; i++) {
			if (i == 8)
				h = fnv1a(&h, sizeof h);
			fill[i] = (uint8_t)(h >> (8 * (i % 8)));
		}
	}
	for (size_t bit = p->prefix_len; bit < nbytes * 8; bit++) {
		uint8_t mask = (uint8_t)(0x80 >> (bit % 8));
		addr[bit / 8] = (uint8_t)((addr[bit / 8] & ~mask) | (fill[bit / 8] & mask));
	}
	memset(out, 0, sizeof *out);
	if (p->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
	}
}

int egress_bind(uv_tcp_t *h, const struct conf_source *cs, const struct sockaddr *adhoc,
		const struct sockaddr *dest, const void *key, size_t keylen)
{
	struct sockaddr_storage src;
	uv_os_fd_t fd;
	int one = 1;

	if (adhoc) {
		memcpy(&src, adhoc, adhoc->sa_family == AF_INET ? sizeof(struct sockaddr_in)
								 : sizeof(struct sockaddr_in6));
	} else if (cs->kind == CONF_SOURCE_ADDRESS) {
		src = cs->addr;
	} else if (cs->kind == CONF_SOURCE_PREFIX) {
		prefix_address(cs, key, keylen, &src);
	} else {
		return 0; /* the kernel picks the source */
	}
	if (src.ss_family != dest->sa_family)
		return UV_EAFNOSUPPORT;
	if (src.ss_family == AF_INET)
		((struct sockaddr_in *)&src)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&src)->sin6_port = 0;
	if (uv_fileno((uv_handle_t *)h, &fd) < 0)
		return UV_EBADF;
	/* Defer the port choice to connect(), so one source address can hold a
	 * full 4-tuple space instead of ~28k ports in all. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	/* Only prefix sources bind to addresses the host routes but does not
	 * carry; on plain sources FREEBIND would hide EADDRNOTAVAIL, the very
	 * signal that the address is unplumbed. */
	if (!adhoc && cs->kind == CONF_SOURCE_PREFIX) {
		if (src.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
		else
			setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
	}
	/* bind(2) itself rather than uv_tcp_bind(), which also sets
	 * SO_REUSEADDR: useless here, and a system call per connection. */
	if (bind(fd, (const struct sockaddr *)&src,
		 src.ss_family == AF_INET ? sizeof(struct sockaddr_in)
					  : sizeof(struct sockaddr_in6)) < 0)
		return -errno;
	return 0;
}

enum egress_blame egress_blame_connect(int uv_err)
{
	switch (uv_err) {
	case UV_EADDRNOTAVAIL:
	case UV_EADDRINUSE:
		return EGRESS_BLAME_PORTS;
	case UV_ECONNREFUSED:
	case UV_ENETUNREACH:
	case UV_EHOSTUNREACH:
	case UV_ETIMEDOUT:
	case UV_ECONNRESET:
	case UV_ECONNABORTED:
	case UV_EACCES:
	case UV_EPERM:
	case UV_EAFNOSUPPORT:
		return EGRESS_BLAME_DEST;
	default:
		return EGRESS_BLAME_DEST;
	}
}

uint8_t egress_rep_for(int uv_err)
{
	switch (uv_err) {
	case UV_ECONNREFUSED:
		return 0x05;
	case UV_ENETUNREACH:
		return 0x03;
	case UV_EHOSTUNREACH:
		return 0x04;
	case UV_ETIMEDOUT:
		return 0x06;
	case UV_EACCES:
	case UV_EPERM:
		return 0x02;
	default:
		return 0x01;
	}
}

/* ---- generations: conf -> pools and users ---- */

struct proxy_gen_priv {
	struct proxy_gen gen;
	struct pool_source **by_conf; /* conf source index -> pool source */
};

static void identity_of(const struct conf_source *cs, char *buf, size_t len)
{
	char a[64], b[64];

	switch (cs->kind) {
	case CONF_SOURCE_ADDRESS:
		snprintf(buf, len, "address %s", conf_addr_str((const struct sockaddr *)&cs->addr, a, sizeof a));
		break;
	case CONF_SOURCE_PREFIX: {
		struct sockaddr_storage ss = {0};
		ss.ss_family = (sa_family_t)cs->prefix.family;
		if (cs->prefix.family == AF_INET)
			memcpy(&((struct sockaddr_in *)&ss)->sin_addr, cs->prefix.addr, 4);
		else
			memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, cs->prefix.addr, 16);
		snprintf(buf, len, "prefix %s/%u", conf_addr_str((struct sockaddr *)&ss, a, sizeof a),
			 cs->prefix.prefix_len);
		break;
	}
	case CONF_SOURCE_PROXY:
		snprintf(buf, len, "socks5 %s via %s",
			 conf_addr_str((const struct sockaddr *)&cs->proxy_server, a, sizeof a),
			 cs->has_proxy_source_address
				 ? conf_addr_str((const struct sockaddr *)&cs->proxy_source_address, b,
						 sizeof b)
				 : "-");
		break;
	default:
		snprintf(buf, len, "default-route");
		break;
	}
}

static struct pool_rule rule_of(const struct conf_suspend_rule *r)
{
	return (struct pool_rule){
		.enabled = r->enabled,
		.count = r->trigger.count,
		.period_ms = r->trigger.period_ms,
		.duration_ms = r->duration_ms,
	};
}

static unsigned families_of(const struct conf_source *cs)
{
	int fam = cs->kind == CONF_SOURCE_ADDRESS  ? cs->addr.ss_family
		  : cs->kind == CONF_SOURCE_PREFIX ? cs->prefix.family
						   : AF_UNSPEC;

	return fam == AF_INET ? POOL_FAMILY_V4 : fam == AF_INET6 ? POOL_FAMILY_V6 : POOL_FAMILY_ANY;
}

static void fmt_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms == UINT64_MAX)
		snprintf(buf, len, "until-resumed");
	else if (ms % 3600000 == 0 && ms)
		snprintf(buf, len, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms % 60000 == 0 && ms)
		snprintf(buf, len, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, len, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* The logging watcher: WARN into suspension, INFO out of it. */
static void on_pool_event(const struct pool_event *ev, void *ctx)
{
	const char *name = pool_source_name(ev->source);
	const char *id = pool_source_identity(ev->source);
	const char *addr = strchr(id, ' ') ? strchr(id, ' ') + 1 : id;
	char dur[32], per[32], win[64];

	(void)ctx;
	switch (ev->type) {
	case POOL_EVENT_OFFLINE:
		fmt_ms(ev->duration_ms, dur, sizeof dur);
		if (ev->reason == POOL_REASON_MANUAL) {
			log_warn("pool", "source suspended source=%s address=%s reason=manual duration=%s",
				 name, addr, dur);
			break;
		}
		if (ev->trigger_count <= 1) {
			snprintf(win, sizeof win, "immediate");
		} else {
			fmt_ms(ev->trigger_period_ms, per, sizeof per);
			snprintf(win, sizeof win, "%u/%s", ev->trigger_count, per);
		}
		log_warn("pool",
			 "source suspended source=%s address=%s reason=%s error=\"%s\" failures=%u "
			 "trigger=%s duration=%s",
			 name, addr, pool_reason_name(ev->reason), ev->err ? strerror(ev->err) : "-",
			 ev->errors, win, dur);
		break;
	case POOL_EVENT_ONLINE:
		log_info("pool", "source resumed source=%s address=%s reason=%s by=%s", name, addr,
			 pool_reason_name(ev->reason), ev->resumed ? "resume" : "expiry");
		break;
	case POOL_EVENT_FAILURE:
		log_debug("pool", "source failure source=%s address=%s kind=%s error=\"%s\" errors=%u",
			  name, addr, pool_failure_name(ev->kind), ev->err ? strerror(ev->err) : "-",
			  ev->errors);
		break;
	default:
		break;
	}
}

int proxy_gen_new(struct conf *conf, const struct proxy_gen *old, struct proxy_gen **out, char *err,
		  size_t errlen)
{
	struct proxy_gen_priv *g = calloc(1, sizeof *g);
	struct pool_source_spec *ss = calloc(conf->n_sources ? conf->n_sources : 1, sizeof *ss);
	struct pool_spec *ps = calloc(conf->n_pools ? conf->n_pools : 1, sizeof *ps);
	struct pool_entry_spec **es = calloc(conf->n_pools ? conf->n_pools : 1, sizeof *es);
	char (*ids)[160] = calloc(conf->n_sources ? conf->n_sources : 1, sizeof *ids);
	struct pool_set_spec spec = {0};
	size_t n_pools = conf->n_pools;
	int rc = -ENOMEM;

	if (!g || !ss || !ps || !es || !ids)
		goto fail;
	for (size_t i = 0; i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		identity_of(cs, ids[i], sizeof ids[i]);
		ss[i] = (struct pool_source_spec){
			.name = cs->name,
			.identity = ids[i],
			.families = families_of(cs),
			.unplumbed = rule_of(&cs->unplumbed),
			.proxy_unhealthy = rule_of(&cs->proxy_unhealthy),
			.max_connections = cs->max_connections,
			.rate_count = cs->rate.count,
			.rate_period_ms = cs->rate.period_ms,
			.ref = i,
		};
	}
	for (size_t p = 0; p < conf->n_pools; p++) {
		const struct conf_pool *cp = &conf->pools[p];
		es[p] = calloc(cp->n_entries ? cp->n_entries : 1, sizeof *es[p]);
		if (!es[p])
			goto fail;
		for (size_t e = 0; e < cp->n_entries; e++)
			es[p][e] = (struct pool_entry_spec){
				.source = cp->entries[e].source,
				.weight = cp->entries[e].weight,
				.priority = cp->entries[e].priority,
			};
		ps[p] = (struct pool_spec){
			.name = cp->name,
			.strategy = cp->strategy == CONF_STRATEGY_HASH	       ? POOL_STRATEGY_HASH
				    : cp->strategy == CONF_STRATEGY_FAILOVER ? POOL_STRATEGY_FAILOVER
									     : POOL_STRATEGY_ROUND_ROBIN,
			.entries = es[p],
			.n_entries = cp->n_entries,
		};
	}
	spec.sources = ss;
	spec.n_sources = conf->n_sources;
	spec.pools = ps;
	spec.n_pools = conf->n_pools;
	if (old)
		rc = pool_set_new_from(old->pools, &spec, &g->gen.pools, err, errlen);
	else
		rc = pool_set_new(&spec, &g->gen.pools, err, errlen);
	if (rc < 0)
		goto fail;
	if (!old && (rc = pool_set_watch(g->gen.pools,
					 POOL_EVENT_MASK(POOL_EVENT_OFFLINE) |
						 POOL_EVENT_MASK(POOL_EVENT_ONLINE) |
						 POOL_EVENT_MASK(POOL_EVENT_FAILURE),
					 on_pool_event, NULL)) < 0)
		goto fail;
	g->by_conf = calloc(conf->n_sources ? conf->n_sources : 1, sizeof *g->by_conf);
	if (!g->by_conf)
		goto fail;
	for (size_t i = 0; i < conf->n_sources; i++)
		g->by_conf[i] = pool_set_source_at(g->gen.pools, i);

	rc = -ENOMEM;
	g->gen.auth = auth_store_new();
	if (!g->gen.auth)
		goto fail;
	for (size_t u = 0; u < conf->n_users; u++) {
		rc = auth_store_add(g->gen.auth, conf->users[u].name, conf->users[u].password_hash,
				    conf->users[u].password);
		if (rc < 0) {
			snprintf(err, errlen, "%s:%u: [user \"%s\"]: cannot use this password entry",
				 conf->path, conf->users[u].line, conf->users[u].name);
			goto fail;
		}
	}
	g->gen.conf = conf;
	g->gen.refs = 1;
	rc = 0;
	*out = &g->gen;
	goto done;
fail:
	if (rc == -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "out of memory");
	if (g) {
		pool_set_free(g->gen.pools);
		auth_store_free(g->gen.auth);
		free(g->by_conf);
		free(g);
	}
	conf_free(conf);
done:
	for (size_t p = 0; es && p < n_pools; p++)
		free(es[p]);
	free(es);
	free(ps);
	free(ss);
	free(ids);
	return rc;
}

void proxy_gen_unref(struct proxy_gen *gen)
{
	struct proxy_gen_priv *g;

	if (!gen || --gen->refs > 0)
		return;
	g = container_of(gen, struct proxy_gen_priv, gen);
	pool_set_free(gen->pools);
	auth_store_free(gen->auth);
	conf_free(gen->conf);
	free(g->by_conf);
	free(g);
}

const struct conf_source *egress_conf_source(const struct proxy_gen *gen,
					     const struct pool_source *src)
{
	return &gen->conf->sources[pool_source_ref(src)];
}

struct pool_source *egress_pool_source(const struct proxy_gen *gen, size_t conf_index)
{
	const struct proxy_gen_priv *g = container_of(gen, const struct proxy_gen_priv, gen);

	return conf_index < gen->conf->n_sources ? g->by_conf[conf_index] : NULL;
}

struct pool *egress_pool(const struct proxy_gen *gen, size_t i)
{
	return pool_set_pool_at(gen->pools, i);
}

int egress_probe_bind(const struct sockaddr *addr)
{
	struct sockaddr_storage ss;
	socklen_t len = addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						   : sizeof(struct sockaddr_in6);
	int fd, one = 1, rc = 0;

	memcpy(&ss, addr, len);
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* Same options as the real attempt, so the probe takes no port. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int egress_probe_prefix(const struct conf_source *cs)
{
	struct sockaddr_storage a, b;
	socklen_t len = cs->prefix.family == AF_INET ? sizeof(struct sockaddr_in)
						     : sizeof(struct sockaddr_in6);
	struct timeval tv = {.tv_sec = 1};
	int lfd = -1, cfd = -1, one = 1, rc = 0;
	int level = cs->prefix.family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
	int opt = cs->prefix.family == AF_INET ? IP_FREEBIND : IPV6_FREEBIND;

	/* Two addresses of the prefix: a listener on one, a client on the
	 * other. The connection only completes if the host routes the prefix
	 * to itself (ip -6 route add local PREFIX dev lo). */
	prefix_address(cs, "sockpool-probe-listen", 21, &a);
	prefix_address(cs, "sockpool-probe-client", 21, &b);
	lfd = socket(cs->prefix.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cfd = socket(cs->prefix.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || cfd < 0) {
		rc = -errno;
		goto out;
	}
	setsockopt(lfd, level, opt, &one, sizeof one);
	setsockopt(cfd, level, opt, &one, sizeof one);
	setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (bind(lfd, (struct sockaddr *)&a, len) < 0 || listen(lfd, 1) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &len) < 0 ||
	    bind(cfd, (struct sockaddr *)&b, len) < 0 || connect(cfd, (struct sockaddr *)&a, len) < 0)
		rc = -errno;
out:
	if (lfd >= 0)
		close(lfd);
	if (cfd >= 0)
		close(cfd);
	return rc;
}
