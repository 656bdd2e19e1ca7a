/* pool: building a set from its spec, reload carry-over, lifetimes, lookups. */
#include "pool_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL__MAX_SOURCES (UINT32_C(1) << 24)
#define POOL__MAX_POOLS	  (UINT32_C(1) << 24)

static void *libc_calloc(size_t n, size_t size, void *ctx)
{
	(void)ctx;
	return calloc(n, size);
}

static void libc_free(void *ptr, void *ctx)
{
	(void)ctx;
	free(ptr);
}

static const struct pool_alloc pool__libc = {libc_calloc, libc_free, NULL};

void *pool__calloc(const struct pool_alloc *a, size_t n, size_t size)
{
	if (n == 0)
		n = 1;
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	return a->calloc(n, size, a->ctx);
}

void pool__free(const struct pool_alloc *a, void *p)
{
	if (p)
		a->free(p, a->ctx);
}

/* MurmurHash64A (Austin Appleby, public domain), tail read byte-wise. */
uint64_t pool__hash(const void *key, size_t len, uint64_t seed)
{
	const uint64_t m = UINT64_C(0xc6a4a7935bd1e995);
	const unsigned char *p = key;
	uint64_t h = seed ^ (len * m);

	while (len >= 8) {
		uint64_t k;
		memcpy(&k, p, 8);
		k *= m;
		k ^= k >> 47;
		k *= m;
		h ^= k;
		h *= m;
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t t = 0;
		for (size_t i = 0; i < len; i++)
			t |= (uint64_t)p[i] << (8 * i);
		h ^= t;
		h *= m;
	}
	h ^= h >> 47;
	h *= m;
	h ^= h >> 47;
	return h;
}

/* splitmix64's finalizer: a bijection with full avalanche. */
uint64_t pool__mix(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static int check_rule(const struct pool_source_spec *s, const char *what, const struct pool_rule *r,
		      char *err, size_t errlen)
{
	if (r->count > POOL_TRIGGER_MAX)
		return fail(err, errlen, "source \"%s\": %s trigger count %u exceeds %u", s->name,
			    what, (unsigned)r->count, (unsigned)POOL_TRIGGER_MAX);
	if (r->count > 1 && r->period_ms == 0)
		return fail(err, errlen, "source \"%s\": %s trigger %u/period needs a period > 0",
			    s->name, what, (unsigned)r->count);
	if (r->enabled && r->duration_ms == 0)
		return fail(err, errlen, "source \"%s\": %s needs a duration > 0", s->name, what);
	return 0;
}

static int check_spec(const struct pool_set_spec *spec, char *err, size_t errlen)
{
	if (!spec || (spec->n_sources && !spec->sources) || (spec->n_pools && !spec->pools))
		return fail(err, errlen, "pool spec: missing sources or pools array");
	if (spec->n_sources > POOL__MAX_SOURCES || spec->n_pools > POOL__MAX_POOLS)
		return fail(err, errlen, "pool spec: too many sources or pools (max %u)",
			    (unsigned)POOL__MAX_SOURCES);
	if (spec->alloc && (!spec->alloc->calloc || !spec->alloc->free))
		return fail(err, errlen, "pool spec: allocator without calloc or free");
	for (size_t i = 0; i < spec->n_sources; i++) {
		const struct pool_source_spec *s = &spec->sources[i];
		int rc;
		if (!s->name || !*s->name)
			return fail(err, errlen, "source #%zu: empty name", i);
		if (s->families == 0 || (s->families & ~POOL_FAMILY_ANY))
			return fail(err, errlen, "source \"%s\": families must be V4, V6 or both",
				    s->name);
		if ((rc = check_rule(s, "suspend_when_unplumbed", &s->unplumbed, err, errlen)) ||
		    (rc = check_rule(s, "suspend_when_proxy_unhealthy", &s->proxy_unhealthy, err,
				     errlen)))
			return rc;
		if (s->rate_count &&
		    (s->rate_period_ms == 0 || s->rate_period_ms > UINT64_MAX / 2 / s->rate_count))
			return fail(err, errlen,
				    "source \"%s\": rate %u per %llu ms is out of range", s->name,
				    (unsigned)s->rate_count, (unsigned long long)s->rate_period_ms);
	}
	for (size_t i = 0; i < spec->n_pools; i++) {
		const struct pool_spec *p = &spec->pools[i];
		if (!p->name || !*p->name)
			return fail(err, errlen, "pool #%zu: empty name", i);
		if (p->strategy != POOL_STRATEGY_ROUND_ROBIN && p->strategy != POOL_STRATEGY_HASH &&
		    p->strategy != POOL_STRATEGY_FAILOVER)
			return fail(err, errlen, "pool \"%s\": unknown strategy %d", p->name,
				    (int)p->strategy);
		if (p->n_entries && !p->entries)
			return fail(err, errlen, "pool \"%s\": missing entries array", p->name);
		if (p->n_entries > POOL__MAX_SOURCES)
			return fail(err, errlen, "pool \"%s\": too many entries", p->name);
		for (size_t j = 0; j < p->n_entries; j++) {
			const struct pool_entry_spec *e = &p->entries[j];
			if (e->source >= spec->n_sources)
				return fail(err, errlen,
					    "pool \"%s\": entry %zu names source #%zu of %zu",
					    p->name, j, e->source, spec->n_sources);
			if (e->weight > POOL_WEIGHT_MAX)
				return fail(err, errlen,
					    "pool \"%s\": source \"%s\" weight %u exceeds %u",
					    p->name, spec->sources[e->source].name,
					    (unsigned)e->weight, (unsigned)POOL_WEIGHT_MAX);
		}
	}
	return 0;
}

static uint32_t table_size(size_t n)
{
	uint32_t size = 8;
	while (size < 2 * n)
		size <<= 1;
	return size;
}

static uint64_t name_hash(const char *name)
{
	return pool__hash(name, strlen(name), 0);
}

/* Insert `name` -> index; -EEXIST when the name is already present. */
static int table_insert(uint32_t *tab, uint32_t mask, const char *const *names, size_t stride,
			const char *name, uint32_t index)
{
	uint32_t i = (uint32_t)name_hash(name) & mask;
	while (tab[i]) {
		const char *other =
		    *(const char *const *)((const char *)names + (size_t)(tab[i] - 1) * stride);
		if (strcmp(other, name) == 0)
			return -EEXIST;
		i = (i + 1) & mask;
	}
	tab[i] = index + 1;
	return 0;
}

static int64_t table_find(const uint32_t *tab, uint32_t mask, const char *const *names,
			  size_t stride, const char *name)
{
	if (!tab || !name)
		return -1;
	uint32_t i = (uint32_t)name_hash(name) & mask;
	while (tab[i]) {
		const char *other =
		    *(const char *const *)((const char *)names + (size_t)(tab[i] - 1) * stride);
		if (strcmp(other, name) == 0)
			return tab[i] - 1;
		i = (i + 1) & mask;
	}
	return -1;
}

static void anchor_link(struct pool__anchor *a, struct pool_source *s)
{
	s->anchor = a;
	a->refs++;
	s->aprev = a->tail;
	s->anext = NULL;
	if (a->tail)
		a->tail->anext = s;
	else
		a->head = s;
	a->tail = s;
	s->linked = true;
}

static void anchor_unlink(struct pool_source *s)
{
	struct pool__anchor *a = s->anchor;
	if (!s->linked)
		return;
	if (s->aprev)
		s->aprev->anext = s->anext;
	else
		a->head = s->anext;
	if (s->anext)
		s->anext->aprev = s->aprev;
	else
		a->tail = s->aprev;
	s->anext = s->aprev = NULL;
	s->linked = false;
}

void pool__set_destroy(struct pool_set *set)
{
	const struct pool_alloc *a = set->alloc;

	for (uint32_t i = 0; set->pools && i < set->n_pools; i++) {
		struct pool *p = &set->pools[i];
		for (uint32_t t = 0; p->tiers && t < p->n_tiers; t++)
			for (int f = 0; f < 2; f++) {
				pool__free(a, p->tiers[t].heap[f].node);
				pool__free(a, p->tiers[t].heap[f].pos);
				pool__free(a, p->tiers[t].heap[f].k);
				pool__free(a, p->tiers[t].heap[f].w);
			}
		pool__ring_free(p);
		pool__free(a, p->tiers);
		pool__free(a, p->members);
		pool__free(a, p->entries);
	}
	for (uint32_t i = 0; set->src && i < set->n_src; i++) {
		struct pool_source *s = &set->src[i];
		struct pool__anchor *an = s->anchor;
		if (!an)
			continue;
		anchor_unlink(s);
		if (--an->refs == 0)
			pool__free(an->alloc, an);
	}
	pool__free(a, set->pools);
	pool__free(a, set->src);
	pool__free(a, set->flags);
	pool__free(a, set->src_tab);
	pool__free(a, set->pool_tab);
	pool__free(a, set->theap[0].node);
	pool__free(a, set->theap[1].node);
	pool__free(a, set->watchers);
	pool__free(a, set->mems);
	pool__free(a, set->win_store);
	pool__free(a, set->strings);
	pool__free(a, set);
}

static uint32_t rule_cap(const struct pool_rule *r)
{
	return r->count > 1 ? r->count : 1;
}

/* Copy the state of `o` (previous generation, same name and identity) into
 * the freshly initialised `s`. */
static void carry_over(struct pool_source *s, const struct pool_source *o)
{
	struct pool_set *set = s->set;

	s->counters = o->counters;
	s->health = o->health;
	for (int k = 0; k < 2; k++) {
		const struct pool__window *ow = &o->win[k];
		struct pool__window *w = &s->win[k];
		uint32_t keep = ow->n < w->cap ? ow->n : w->cap;
		for (uint32_t j = 0; j < keep; j++)
			w->t[j] = ow->t[(ow->head + ow->n - keep + j) % ow->cap];
		w->n = keep;
		w->head = 0;
	}
	if (o->state == POOL_STATE_SUSPENDED) {
		s->state = POOL_STATE_SUSPENDED;
		s->reason = o->reason;
		s->until = o->until;
		pool__theap_push(set, 0, s->index, s->until);
	}
	if (!s->rate_count)
		return;
	if (o->rate_count == s->rate_count && o->rate_period == s->rate_period) {
		s->tokens = o->tokens;
		s->tokens_ms = o->tokens_ms;
		s->rate_blocked = o->rate_blocked;
		s->rate_ready = o->rate_ready;
	} else if (o->rate_count) {
		uint64_t whole = o->tokens / o->rate_period;
		if (whole > s->rate_count)
			whole = s->rate_count;
		s->tokens = whole * s->rate_period;
		s->tokens_ms = o->tokens_ms;
		if (whole == 0) {
			s->rate_blocked = true;
			s->rate_ready =
			    o->tokens_ms + (s->rate_period + s->rate_count - 1) / s->rate_count;
		}
	}
	if (s->rate_blocked)
		pool__theap_push(set, 1, s->index, s->rate_ready);
}

static int build_sources(struct pool_set *set, struct pool_set *old,
			 const struct pool_set_spec *spec, char *err, size_t errlen)
{
	const struct pool_alloc *a = set->alloc;
	size_t n = spec->n_sources, chars = 0, windows = 0;

	for (size_t i = 0; i < n; i++) {
		const struct pool_source_spec *ss = &spec->sources[i];
		chars += strlen(ss->name) + 1 + (ss->identity ? strlen(ss->identity) : 0) + 1;
		windows += rule_cap(&ss->unplumbed) + rule_cap(&ss->proxy_unhealthy);
	}
	for (size_t i = 0; i < spec->n_pools; i++)
		chars += strlen(spec->pools[i].name) + 1;

	set->n_src = (uint32_t)n;
	set->src = pool__calloc(a, n, sizeof(*set->src));
	set->flags = pool__calloc(a, n, 1);
	set->strings = pool__calloc(a, chars, 1);
	set->win_store = pool__calloc(a, windows, sizeof(uint64_t));
	set->src_mask = table_size(n) - 1;
	set->src_tab = pool__calloc(a, (size_t)set->src_mask + 1, sizeof(uint32_t));
	set->theap[0].node = pool__calloc(a, n, sizeof(struct pool__tnode));
	set->theap[1].node = pool__calloc(a, n, sizeof(struct pool__tnode));
	if (!set->src || !set->flags || !set->strings || !set->win_store || !set->src_tab ||
	    !set->theap[0].node || !set->theap[1].node)
		return -ENOMEM;

	char *str = set->strings;
	uint64_t *wt = set->win_store;
	for (size_t i = 0; i < n; i++) {
		const struct pool_source_spec *ss = &spec->sources[i];
		struct pool_source *s = &set->src[i];
		size_t len = strlen(ss->name) + 1;

		s->set = set;
		s->index = (uint32_t)i;
		s->families = ss->families;
		s->name = memcpy(str, ss->name, len);
		str += len;
		len = ss->identity ? strlen(ss->identity) + 1 : 1;
		s->identity = ss->identity ? memcpy(str, ss->identity, len) : str;
		str += len;
		if (table_insert(set->src_tab, set->src_mask, &set->src[0].name,
				 sizeof(struct pool_source), s->name, s->index))
			return fail(err, errlen, "source \"%s\": defined twice", s->name);
		s->ref = ss->ref;
		s->rule[POOL_FAILURE_UNPLUMBED] = ss->unplumbed;
		s->rule[POOL_FAILURE_PROXY_UNHEALTHY] = ss->proxy_unhealthy;
		for (int k = 0; k < 2; k++) {
			s->win[k].cap = rule_cap(&s->rule[k]);
			s->win[k].t = wt;
			wt += s->win[k].cap;
		}
		s->max_conn = ss->max_connections;
		s->rate_count = ss->rate_count;
		s->rate_period = ss->rate_count ? ss->rate_period_ms : 0;
		s->tokens = (uint64_t)s->rate_count * s->rate_period;
		s->tpos[0] = s->tpos[1] = POOL__NONE;
		s->state = POOL_STATE_ELIGIBLE;
		s->reason = POOL_REASON_NONE;

		const struct pool_source *o = old ? pool_set_source(old, s->name) : NULL;
		if (o && strcmp(o->identity, s->identity) == 0) {
			anchor_link(o->anchor, s);
			carry_over(s, o);
		} else {
			struct pool__anchor *an = pool__calloc(a, 1, sizeof(*an));
			if (!an)
				return -ENOMEM;
			an->alloc = a;
			anchor_link(an, s);
		}
	}
	for (size_t i = 0; i < spec->n_pools; i++) {
		size_t len = strlen(spec->pools[i].name) + 1;
		set->pools[i].name = memcpy(str, spec->pools[i].name, len);
		str += len;
	}
	return 0;
}

static int cmp_member_order(const void *pa, const void *pb)
{
	const uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
	return a < b ? -1 : a > b;
}

static int build_pool(struct pool_set *set, uint32_t index, const struct pool_spec *ps,
		      uint32_t *seen, char *err, size_t errlen)
{
	const struct pool_alloc *a = set->alloc;
	struct pool *p = &set->pools[index];
	uint32_t n_members = 0;

	p->set = set;
	p->index = index;
	p->strategy = ps->strategy;
	p->n_entries = (uint32_t)ps->n_entries;
	p->entries = pool__calloc(a, ps->n_entries, sizeof(*p->entries));
	if (!p->entries)
		return -ENOMEM;
	if (table_insert(set->pool_tab, set->pool_mask, &set->pools[0].name, sizeof(struct pool),
			 p->name, index))
		return fail(err, errlen, "pool \"%s\": defined twice", p->name);
	for (uint32_t j = 0; j < p->n_entries; j++) {
		const struct pool_entry_spec *e = &ps->entries[j];
		if (seen[e->source] == index + 1)
			return fail(err, errlen, "pool \"%s\": source \"%s\" listed twice", p->name,
				    set->src[e->source].name);
		seen[e->source] = index + 1;
		p->entries[j].src = (uint32_t)e->source;
		p->entries[j].weight = e->weight;
		p->entries[j].priority = ps->strategy == POOL_STRATEGY_FAILOVER ? e->priority : 0;
		n_members += e->weight > 0;
	}

	/* Members in tier order: (priority << 32 | spec position) sorts stably. */
	uint64_t *order = pool__calloc(a, n_members, sizeof(uint64_t));
	p->members = pool__calloc(a, n_members, sizeof(*p->members));
	if (!order || !p->members) {
		pool__free(a, order);
		return -ENOMEM;
	}
	uint32_t m = 0;
	for (uint32_t j = 0; j < p->n_entries; j++)
		if (p->entries[j].weight)
			order[m++] = (uint64_t)p->entries[j].priority << 32 | j;
	qsort(order, n_members, sizeof(uint64_t), cmp_member_order);
	p->n_members = n_members;
	uint32_t n_tiers = 0;
	for (m = 0; m < n_members; m++) {
		const struct pool__entry *e = &p->entries[(uint32_t)order[m]];
		p->members[m].src = e->src;
		p->members[m].weight = e->weight;
		if (m == 0 || (order[m] >> 32) != (order[m - 1] >> 32))
			n_tiers++;
	}
	p->tiers = pool__calloc(a, n_tiers, sizeof(*p->tiers));
	if (!p->tiers) {
		pool__free(a, order);
		return -ENOMEM;
	}
	for (m = 0; m < n_members; m++) {
		if (m == 0 || (order[m] >> 32) != (order[m - 1] >> 32)) {
			p->tiers[p->n_tiers].priority = (uint32_t)(order[m] >> 32);
			p->tiers[p->n_tiers].first = m;
			p->n_tiers++;
		}
		p->tiers[p->n_tiers - 1].n++;
		p->members[m].tier = p->n_tiers - 1;
	}
	pool__free(a, order);
	for (uint32_t t = 0; t < p->n_tiers; t++) {
		struct pool__tier *tier = &p->tiers[t];
		tier->large = p->strategy != POOL_STRATEGY_HASH && tier->n > POOL_SWRR_MAX;
		if (!tier->large)
			continue;
		for (int f = 0; f < 2; f++) {
			struct pool__rrheap *h = &tier->heap[f];
			h->node = pool__calloc(a, tier->n, sizeof(*h->node));
			h->pos = pool__calloc(a, tier->n, sizeof(*h->pos));
			h->k = pool__calloc(a, tier->n, sizeof(*h->k));
			h->w = pool__calloc(a, tier->n, sizeof(*h->w));
			if (!h->node || !h->pos || !h->k || !h->w)
				return -ENOMEM;
			memset(h->pos, 0xff, tier->n * sizeof(*h->pos));
			h->d_exact = true;
			for (uint32_t j = 0; j < tier->n; j++) {
				h->w[j] = p->members[tier->first + j].weight;
				h->d_exact = h->d_exact && h->w[j] <= (1u << 14);
			}
		}
	}
	if (p->strategy == POOL_STRATEGY_HASH)
		return pool__ring_build(p);
	return 0;
}

static int build_memberships(struct pool_set *set)
{
	size_t total = 0;
	for (uint32_t i = 0; i < set->n_pools; i++)
		for (uint32_t m = 0; m < set->pools[i].n_members; m++) {
			set->src[set->pools[i].members[m].src].mem_n++;
			total++;
		}
	set->mems = pool__calloc(set->alloc, total, sizeof(*set->mems));
	if (!set->mems)
		return -ENOMEM;
	uint32_t next = 0;
	for (uint32_t s = 0; s < set->n_src; s++) {
		set->src[s].mem_first = next;
		next += set->src[s].mem_n;
		set->src[s].mem_n = 0;
	}
	for (uint32_t i = 0; i < set->n_pools; i++)
		for (uint32_t m = 0; m < set->pools[i].n_members; m++) {
			struct pool_source *s = &set->src[set->pools[i].members[m].src];
			set->mems[s->mem_first + s->mem_n++] = (struct pool__membership){i, m};
		}
	return 0;
}

int pool_set_new_from(struct pool_set *old, const struct pool_set_spec *spec, struct pool_set **out,
		      char *err, size_t errlen)
{
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!out || (old && old->retired))
		return fail(err, errlen, "pool spec: missing output or freed previous set");
	if ((rc = check_spec(spec, err, errlen)))
		return rc;

	const struct pool_alloc *a = spec->alloc ? spec->alloc : &pool__libc;
	struct pool_set *set = pool__calloc(a, 1, sizeof(*set));
	uint32_t *seen = NULL;
	if (!set)
		return -ENOMEM;
	set->alloc = a;
	set->gen = old ? old->gen + 1 : 1;
	set->refs = 1;
	set->n_pools = (uint32_t)spec->n_pools;
	set->pools = pool__calloc(a, spec->n_pools, sizeof(*set->pools));
	set->pool_mask = table_size(spec->n_pools) - 1;
	set->pool_tab = pool__calloc(a, (size_t)set->pool_mask + 1, sizeof(uint32_t));
	rc = -ENOMEM;
	if (!set->pools || !set->pool_tab)
		goto fail;
	if ((rc = build_sources(set, old, spec, err, errlen)))
		goto fail;
	rc = -ENOMEM;
	if (!(seen = pool__calloc(a, spec->n_sources, sizeof(uint32_t))))
		goto fail;
	for (uint32_t i = 0; i < set->n_pools; i++)
		if ((rc = build_pool(set, i, &spec->pools[i], seen, err, errlen)))
			goto fail;
	if ((rc = build_memberships(set)))
		goto fail;
	if (old && old->n_watchers) {
		rc = -ENOMEM;
		set->watchers = pool__calloc(a, old->n_watchers, sizeof(*set->watchers));
		if (!set->watchers)
			goto fail;
		memcpy(set->watchers, old->watchers, old->n_watchers * sizeof(*set->watchers));
		set->n_watchers = set->cap_watchers = old->n_watchers;
	}
	/* Every member starts out of the scheduler; refresh inserts available ones. */
	for (uint32_t i = 0; i < set->n_src; i++) {
		struct pool_source *s = &set->src[i];
		s->capped = pool__compute_capped(s);
		set->flags[i] = (uint8_t)(s->families << POOL__FAM_SHIFT);
		pool__refresh(s);
	}
	pool__free(a, seen);
	*out = set;
	return 0;
fail:
	if (rc == -ENOMEM)
		fail(err, errlen, "out of memory");
	pool__free(a, seen);
	pool__set_destroy(set);
	return rc;
}

int pool_set_new(const struct pool_set_spec *spec, struct pool_set **out, char *err, size_t errlen)
{
	return pool_set_new_from(NULL, spec, out, err, errlen);
}

void pool_set_free(struct pool_set *set)
{
	if (!set)
		return;
	assert(!set->retired && !set->firing);
	set->retired = true;
	for (uint32_t i = 0; i < set->n_src; i++)
		anchor_unlink(&set->src[i]);
	if (--set->refs == 0)
		pool__set_destroy(set);
}

int pool_set_watch(struct pool_set *set, unsigned mask, pool_watch_cb cb, void *ctx)
{
	if (!set || !cb || !mask || (mask & ~POOL_EVENTS_ALL) || set->retired)
		return -EINVAL;
	assert(!set->firing);
	if (set->n_watchers == set->cap_watchers) {
		size_t cap = set->cap_watchers ? 2 * set->cap_watchers : 4;
		struct pool__watcher *w = pool__calloc(set->alloc, cap, sizeof(*w));
		if (!w)
			return -ENOMEM;
		if (set->n_watchers)
			memcpy(w, set->watchers, set->n_watchers * sizeof(*w));
		pool__free(set->alloc, set->watchers);
		set->watchers = w;
		set->cap_watchers = cap;
	}
	set->watchers[set->n_watchers++] = (struct pool__watcher){mask, cb, ctx};
	return 0;
}

int pool_set_unwatch(struct pool_set *set, pool_watch_cb cb, void *ctx)
{
	if (!set)
		return -ENOENT;
	assert(!set->firing);
	for (size_t i = 0; i < set->n_watchers; i++) {
		if (set->watchers[i].cb != cb || set->watchers[i].ctx != ctx)
			continue;
		memmove(&set->watchers[i], &set->watchers[i + 1],
			(set->n_watchers - i - 1) * sizeof(*set->watchers));
		set->n_watchers--;
		return 0;
	}
	return -ENOENT;
}

size_t pool_set_source_count(const struct pool_set *set)
{
	return set ? set->n_src : 0;
}

struct pool_source *pool_set_source_at(const struct pool_set *set, size_t index)
{
	return set && index < set->n_src ? &set->src[index] : NULL;
}

struct pool_source *pool_set_source(const struct pool_set *set, const char *name)
{
	if (!set || !set->n_src)
		return NULL;
	int64_t i = table_find(set->src_tab, set->src_mask, &set->src[0].name,
			       sizeof(struct pool_source), name);
	return i < 0 ? NULL : &set->src[i];
}

size_t pool_set_pool_count(const struct pool_set *set)
{
	return set ? set->n_pools : 0;
}

struct pool *pool_set_pool_at(const struct pool_set *set, size_t index)
{
	return set && index < set->n_pools ? &set->pools[index] : NULL;
}

struct pool *pool_set_pool(const struct pool_set *set, const char *name)
{
	if (!set || !set->n_pools)
		return NULL;
	int64_t i = table_find(set->pool_tab, set->pool_mask, &set->pools[0].name,
			       sizeof(struct pool), name);
	return i < 0 ? NULL : &set->pools[i];
}

const char *pool_name(const struct pool *pool)
{
	return pool->name;
}

enum pool_strategy pool_strategy(const struct pool *pool)
{
	return pool->strategy;
}

size_t pool_entry_count(const struct pool *pool)
{
	return pool->n_entries;
}

struct pool_source *pool_entry_at(const struct pool *pool, size_t i, uint32_t *weight,
				  uint32_t *priority)
{
	if (!pool || i >= pool->n_entries)
		return NULL;
	if (weight)
		*weight = pool->entries[i].weight;
	if (priority)
		*priority = pool->entries[i].priority;
	return &pool->set->src[pool->entries[i].src];
}

size_t pool_count_eligible(const struct pool *pool, unsigned families)
{
	size_t n = 0;
	for (uint32_t m = 0; m < pool->n_members; m++) {
		const struct pool_source *s = &pool->set->src[pool->members[m].src];
		n += (s->families & families) && s->state == POOL_STATE_ELIGIBLE;
	}
	return n;
}

const char *pool_source_name(const struct pool_source *src)
{
	return src->name;
}

const char *pool_source_identity(const struct pool_source *src)
{
	return src->identity;
}

size_t pool_source_ref(const struct pool_source *src)
{
	return src->ref;
}

size_t pool_source_index(const struct pool_source *src)
{
	return src->index;
}

unsigned pool_source_families(const struct pool_source *src)
{
	return src->families;
}

const char *pool_strategy_name(enum pool_strategy strategy)
{
	switch (strategy) {
	case POOL_STRATEGY_ROUND_ROBIN:
		return "round-robin";
	case POOL_STRATEGY_HASH:
		return "hash";
	case POOL_STRATEGY_FAILOVER:
		return "failover";
	}
	return "unknown";
}

const char *pool_failure_name(enum pool_failure kind)
{
	switch (kind) {
	case POOL_FAILURE_UNPLUMBED:
		return "unplumbed";
	case POOL_FAILURE_PROXY_UNHEALTHY:
		return "proxy_unhealthy";
	case POOL_FAILURE_PORTS_EXHAUSTED:
		return "ports_exhausted";
	}
	return "unknown";
}

const char *pool_reason_name(enum pool_reason reason)
{
	switch (reason) {
	case POOL_REASON_NONE:
		return "none";
	case POOL_REASON_UNPLUMBED:
		return "unplumbed";
	case POOL_REASON_PROXY_UNHEALTHY:
		return "proxy_unhealthy";
	case POOL_REASON_MANUAL:
		return "manual";
	}
	return "unknown";
}

const char *pool_event_name(enum pool_event_type type)
{
	switch (type) {
	case POOL_EVENT_SUCCESS:
		return "success";
	case POOL_EVENT_FAILURE:
		return "failure";
	case POOL_EVENT_ONLINE:
		return "online";
	case POOL_EVENT_OFFLINE:
		return "offline";
	}
	return "unknown";
}
