/* gen: a generation: from a loaded conf to its pool set, user store and
 * lookup tables, carried over from the previous generation on reload. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "gen.h"
#include "pool.h"
#include "poolsync.h"
#include "proxy.h"

struct gen_addr {
	uint8_t key[16];
	size_t idx;
};

struct gen_name {
	const char *name;
	size_t idx;
};

struct gen_index {
	struct pool_source **by_conf; /* conf source index -> pool source */
	struct gen_addr *addrs;	      /* address sources, sorted by key */
	size_t n_addrs;
	struct gen_name *users; /* sorted by name */
	struct gen_name *pools; /* sorted by name */
	int *user_pool;		/* conf user index -> pool index or -ENOENT */
	uint64_t *members;	/* pool << 32 | source, weight > 0, sorted */
	size_t n_members;
};

/* Addresses compare by their conf_addr_key() form (IPv4 as v4-mapped). */
static bool addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	return conf_addr_key(sa, key) == 0;
}

static int cmp_addr(const void *a, const void *b)
{
	return memcmp(((const struct gen_addr *)a)->key, ((const struct gen_addr *)b)->key, 16);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct gen_name *)a)->name, ((const struct gen_name *)b)->name);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void *alloc_n(size_t n, size_t size)
{
	return calloc(n ? n : 1, size);
}

static int index_names(struct gen_index *ix, const struct conf *conf)
{
	ix->users = alloc_n(conf->n_users, sizeof *ix->users);
	ix->pools = alloc_n(conf->n_pools, sizeof *ix->pools);
	ix->user_pool = alloc_n(conf->n_users, sizeof *ix->user_pool);
	if (!ix->users || !ix->pools || !ix->user_pool)
		return -ENOMEM;
	for (size_t i = 0; i < conf->n_users; i++)
		ix->users[i] = (struct gen_name){conf->users[i].name, i};
	for (size_t i = 0; i < conf->n_pools; i++)
		ix->pools[i] = (struct gen_name){conf->pools[i].name, i};
	qsort(ix->users, conf->n_users, sizeof *ix->users, cmp_name);
	qsort(ix->pools, conf->n_pools, sizeof *ix->pools, cmp_name);
	return 0;
}

static int index_sources(struct gen_index *ix, const struct conf *conf)
{
	size_t n = 0;

	ix->addrs = alloc_n(conf->n_sources, sizeof *ix->addrs);
	for (size_t p = 0; p < conf->n_pools; p++)
		n += conf->pools[p].n_entries;
	ix->members = alloc_n(n, sizeof *ix->members);
	if (!ix->addrs || !ix->members)
		return -ENOMEM;
	for (size_t i = 0; i < conf->n_sources; i++) {
		const struct conf_source *cs = &conf->sources[i];
		if (cs->kind == CONF_SOURCE_ADDRESS &&
		    addr_key((const struct sockaddr *)&cs->addr, ix->addrs[ix->n_addrs].key))
			ix->addrs[ix->n_addrs++].idx = i;
	}
	qsort(ix->addrs, ix->n_addrs, sizeof *ix->addrs, cmp_addr);
	for (size_t p = 0; p < conf->n_pools; p++)
		for (size_t e = 0; e < conf->pools[p].n_entries; e++)
			if (conf->pools[p].entries[e].weight > 0)
				ix->members[ix->n_members++] =
				    (uint64_t)p << 32 | conf->pools[p].entries[e].source;
	qsort(ix->members, ix->n_members, sizeof *ix->members, cmp_u64);
	return 0;
}

static void index_free(struct gen_index *ix)
{
	if (!ix)
		return;
	free(ix->by_conf);
	free(ix->addrs);
	free(ix->users);
	free(ix->pools);
	free(ix->user_pool);
	free(ix->members);
	free(ix);
}

static int index_new(struct proxy_gen *g)
{
	const struct conf *conf = g->conf;
	struct gen_index *ix = calloc(1, sizeof *ix);
	int p;

	if (!ix)
		return -ENOMEM;
	g->index = ix;
	ix->by_conf = alloc_n(conf->n_sources, sizeof *ix->by_conf);
	if (!ix->by_conf || index_names(ix, conf) < 0 || index_sources(ix, conf) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < conf->n_sources; i++)
		ix->by_conf[i] = pool_set_source_at(g->pools, i);
	for (size_t u = 0; u < conf->n_users; u++)
		ix->user_pool[u] =
		    conf->users[u].pool ? gen_find_pool(g, conf->users[u].pool) : -ENOENT;
	p = gen_find_pool(g, conf->server.default_pool);
	g->default_pool = p < 0 ? 0 : (size_t)p;
	return 0;
}

static void identity_of(const struct conf_source *cs, char *buf, size_t len)
{
	char a[64], b[64];

	switch (cs->kind) {
	case CONF_SOURCE_ADDRESS:
		snprintf(buf, len, "address %s",
			 conf_addr_str((const struct sockaddr *)&cs->addr, a, sizeof a));
		break;
	case CONF_SOURCE_PREFIX: {
		struct sockaddr_storage ss = {0};
		ss.ss_family = (sa_family_t)cs->prefix.family;
		if (cs->prefix.family == AF_INET)
			memcpy(&((struct sockaddr_in *)&ss)->sin_addr, cs->prefix.addr, 4);
		else
			memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, cs->prefix.addr, 16);
		snprintf(buf, len, "prefix %s/%u",
			 conf_addr_str((struct sockaddr *)&ss, a, sizeof a), cs->prefix.prefix_len);
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

static enum pool_strategy strategy_of(enum conf_strategy s)
{
	return s == CONF_STRATEGY_HASH	     ? POOL_STRATEGY_HASH
	       : s == CONF_STRATEGY_FAILOVER ? POOL_STRATEGY_FAILOVER
					     : POOL_STRATEGY_ROUND_ROBIN;
}

/* The plain description of a conf for the pool engine; the arrays are the
 * caller's to free with spec_free(), the engine copies what it keeps. */
struct gen_spec {
	struct pool_set_spec set;
	struct pool_source_spec *sources;
	struct pool_spec *pools;
	struct pool_entry_spec **entries;
	char (*ids)[160];
	size_t n_pools;
};

static void spec_free(struct gen_spec *sp)
{
	for (size_t p = 0; sp->entries && p < sp->n_pools; p++)
		free(sp->entries[p]);
	free(sp->entries);
	free(sp->pools);
	free(sp->sources);
	free(sp->ids);
}

static void spec_source(struct gen_spec *sp, const struct conf_source *cs, size_t i)
{
	identity_of(cs, sp->ids[i], sizeof sp->ids[i]);
	sp->sources[i] = (struct pool_source_spec){
	    .name = cs->name,
	    .identity = sp->ids[i],
	    .families = families_of(cs),
	    .unplumbed = rule_of(&cs->unplumbed),
	    .proxy_unhealthy = rule_of(&cs->proxy_unhealthy),
	    .max_connections = cs->max_connections,
	    .rate_count = cs->rate.count,
	    .rate_period_ms = cs->rate.period_ms,
	    .ref = i,
	};
}

static int spec_build(struct gen_spec *sp, const struct conf *conf)
{
	sp->n_pools = conf->n_pools;
	sp->sources = alloc_n(conf->n_sources, sizeof *sp->sources);
	sp->pools = alloc_n(conf->n_pools, sizeof *sp->pools);
	sp->entries = alloc_n(conf->n_pools, sizeof *sp->entries);
	sp->ids = alloc_n(conf->n_sources, sizeof *sp->ids);
	if (!sp->sources || !sp->pools || !sp->entries || !sp->ids)
		return -ENOMEM;
	for (size_t i = 0; i < conf->n_sources; i++)
		spec_source(sp, &conf->sources[i], i);
	for (size_t p = 0; p < conf->n_pools; p++) {
		const struct conf_pool *cp = &conf->pools[p];
		struct pool_entry_spec *es = alloc_n(cp->n_entries, sizeof *es);
		if (!es)
			return -ENOMEM;
		sp->entries[p] = es;
		for (size_t e = 0; e < cp->n_entries; e++)
			es[e] = (struct pool_entry_spec){
			    .source = cp->entries[e].source,
			    .weight = cp->entries[e].weight,
			    .priority = cp->entries[e].priority,
			};
		sp->pools[p] = (struct pool_spec){
		    .name = cp->name,
		    .strategy = strategy_of(cp->strategy),
		    .entries = es,
		    .n_entries = cp->n_entries,
		};
	}
	sp->set = (struct pool_set_spec){
	    .sources = sp->sources,
	    .n_sources = conf->n_sources,
	    .pools = sp->pools,
	    .n_pools = conf->n_pools,
	};
	return 0;
}

static int users_build(struct proxy_gen *g, char *err, size_t errlen)
{
	const struct conf *conf = g->conf;

	g->auth = auth_store_new();
	if (!g->auth)
		return -ENOMEM;
	for (size_t u = 0; u < conf->n_users; u++) {
		if (auth_store_add(g->auth, conf->users[u].name, conf->users[u].password_hash,
				   conf->users[u].password) < 0) {
			snprintf(err, errlen,
				 "%s:%u: [user \"%s\"]: cannot use this password entry", conf->path,
				 conf->users[u].line, conf->users[u].name);
			return -EINVAL;
		}
	}
	return 0;
}

int proxy_gen_new(struct conf *conf, const struct proxy_gen *old, struct poolsync *sync,
		  struct proxy_gen **out, char *err, size_t errlen)
{
	struct proxy_gen *g = calloc(1, sizeof *g);
	struct gen_spec sp = {0};
	int rc = -ENOMEM;

	if (errlen)
		err[0] = '\0';
	if (!g || (rc = spec_build(&sp, conf)) < 0)
		goto fail;
	g->sync = old ? old->sync : sync;
	if (old) {
		/* The old set's sources are live in every worker meanwhile. */
		poolsync_lock(g->sync);
		rc = pool_set_new_from(old->pools, &sp.set, &g->pools, err, errlen);
		poolsync_unlock(g->sync);
	} else {
		rc = pool_set_new(&sp.set, &g->pools, err, errlen);
	}
	if (rc < 0)
		goto fail;
	g->conf = conf;
	if ((rc = index_new(g)) < 0 || (rc = users_build(g, err, errlen)) < 0)
		goto fail;
	atomic_init(&g->refs, 1);
	spec_free(&sp);
	*out = g;
	return 0;
fail:
	if (rc == -ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "out of memory");
	spec_free(&sp);
	if (g) {
		poolsync_set_free(g->sync, g->pools);
		auth_store_free(g->auth);
		index_free(g->index);
		free(g);
	}
	conf_free(conf);
	return rc;
}

void proxy_gen_ref(struct proxy_gen *gen)
{
	atomic_fetch_add_explicit(&gen->refs, 1, memory_order_relaxed);
}

void proxy_gen_unref(struct proxy_gen *gen)
{
	if (!gen || atomic_fetch_sub(&gen->refs, 1) > 1)
		return;
	poolsync_set_free(gen->sync, gen->pools);
	auth_store_free(gen->auth);
	index_free(gen->index);
	conf_free(gen->conf);
	free(gen);
}

int gen_find_source(const struct proxy_gen *gen, const struct sockaddr *addr)
{
	struct gen_addr want;
	const struct gen_addr *hit;

	if (!addr_key(addr, want.key))
		return -ENOENT;
	hit = bsearch(&want, gen->index->addrs, gen->index->n_addrs, sizeof want, cmp_addr);
	return hit ? (int)hit->idx : -ENOENT;
}

static int find_name(const struct gen_name *names, size_t n, const char *name)
{
	struct gen_name want = {name, 0};
	const struct gen_name *hit;

	if (!name)
		return -ENOENT;
	hit = bsearch(&want, names, n, sizeof want, cmp_name);
	return hit ? (int)hit->idx : -ENOENT;
}

int gen_find_user(const struct proxy_gen *gen, const char *name)
{
	return find_name(gen->index->users, gen->conf->n_users, name);
}

int gen_find_pool(const struct proxy_gen *gen, const char *name)
{
	return find_name(gen->index->pools, gen->conf->n_pools, name);
}

int gen_user_pool(const struct proxy_gen *gen, size_t user)
{
	return user < gen->conf->n_users ? gen->index->user_pool[user] : -ENOENT;
}

bool gen_pool_has(const struct proxy_gen *gen, size_t pool, size_t src)
{
	uint64_t want = (uint64_t)pool << 32 | src;

	if (pool >= gen->conf->n_pools || src >= gen->conf->n_sources)
		return false;
	return bsearch(&want, gen->index->members, gen->index->n_members, sizeof want, cmp_u64) !=
	       NULL;
}

const struct conf_source *gen_conf_source(const struct proxy_gen *gen,
					  const struct pool_source *src)
{
	return &gen->conf->sources[pool_source_ref(src)];
}

struct pool_source *gen_pool_source(const struct proxy_gen *gen, size_t index)
{
	return index < gen->conf->n_sources ? gen->index->by_conf[index] : NULL;
}

struct pool *gen_pool(const struct proxy_gen *gen, size_t index)
{
	return pool_set_pool_at(gen->pools, index);
}
