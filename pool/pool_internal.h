/* Internal layout of pool/, shared by pool.c (build, reload, lookups),
 * pool_state.c (suspension, windows, caps, events) and pool_pick.c
 * (strategies). Not installed; nothing outside pool/ includes it. */
#ifndef SOCKPOOL_POOL_INTERNAL_H
#define SOCKPOOL_POOL_INTERNAL_H

#include "pool.h"

#define POOL__NONE	    UINT32_MAX /* "no position" in a heap */
#define POOL__AVAIL	    1u	       /* flags bit: eligible and not capped */
#define POOL__FAM_SHIFT	    1	       /* flags bits 1..2: families */
#define POOL__REBASE_ROUNDS 1024       /* see rr_rebase() in pool_pick.c */
#define POOL__KEY_SHIFT	    30	       /* fixed-point bits of hnode.d */

/* Shared by every generation of one source (same name and identity): the
 * active connection count and the list of live (not freed) generations, oldest
 * first, so reports on a freed set can be forwarded to the newest. */
struct pool__anchor {
	size_t refs; /* source structs pointing here */
	uint32_t active;
	struct pool_source *head, *tail;
	const struct pool_alloc *alloc;
};

/* The last `cap` failure times, oldest at `head`. */
struct pool__window {
	uint64_t *t;
	uint32_t cap, head, n;
};

struct pool__tnode {
	uint64_t t;
	uint32_t src;
};

/* Min-heap of sources by time: [0] suspensions by until, [1] rate refills. */
struct pool__theap {
	struct pool__tnode *node;
	uint32_t n;
};

struct pool_source {
	struct pool_set *set;
	uint32_t index;
	unsigned families;
	const char *name, *identity;
	size_t ref;
	struct pool_rule rule[2]; /* by enum pool_failure, the two windowed kinds */
	struct pool__window win[2];
	uint32_t max_conn;
	uint32_t rate_count;
	uint64_t rate_period;
	uint64_t tokens;     /* rate tokens scaled by rate_period (1 token = period) */
	uint64_t tokens_ms;  /* when tokens was last refilled */
	uint64_t rate_ready; /* rate_blocked: when one token is back */
	bool rate_blocked;
	bool capped;
	bool linked; /* in anchor's live list */
	enum pool_state state;
	enum pool_reason reason;
	uint64_t until;
	struct pool_counters counters;
	struct pool_health health;
	struct pool__anchor *anchor;
	struct pool_source *anext, *aprev;
	uint32_t tpos[2];
	uint32_t mem_first, mem_n; /* memberships in set->mems */
};

struct pool__entry {
	uint32_t src, weight, priority;
};

/* A positive-weight entry, the unit every strategy schedules. */
struct pool__member {
	uint32_t src, weight;
	int64_t cw; /* SWRR current weight */
	uint32_t tier;
};

/* Large-tier scheduler node. After k turns a member's next turn is due at
 * virtual time (2k+1)/(2w) (Sainte-Laguë). d = floor of that in fixed point
 * orders nodes with one compare; equal d falls back to the exact integer
 * comparison, so the order is exact. m is the member's index in its tier. */
struct pool__hnode {
	uint64_t d;
	uint32_t m, w;
};

/* One per family of a large tier; pos, k and w are indexed by m. */
struct pool__rrheap {
	struct pool__hnode *node;
	uint32_t *pos; /* heap position, POOL__NONE when out */
	uint64_t *k;   /* turns taken (kept while out of the heap) */
	uint32_t *w;
	uint32_t n;
	bool d_exact;	 /* all w <= 2^14: equal d means equal deadlines */
	uint64_t vk, vw; /* the last pick's (k, w): virtual time; vw 0 = none */
};

struct pool__tier {
	uint32_t priority, first, n;
	bool large;
	struct pool__rrheap heap[2]; /* by family, large tiers only */
};

/* Sorted points: a 40-bit position above a 24-bit source index, so that one
 * load gives both. */
struct pool__ring {
	uint64_t *pt;
	uint32_t n, bits;
	uint32_t *lut; /* (1 << bits) + 1 bucket starts */
};

struct pool {
	struct pool_set *set;
	uint32_t index;
	const char *name;
	enum pool_strategy strategy;
	struct pool__entry *entries;
	uint32_t n_entries;
	struct pool__member *members; /* sorted by tier */
	uint32_t n_members;
	struct pool__tier *tiers;
	uint32_t n_tiers;
	struct pool__ring *ring[2]; /* hash: by family; ring[1] may alias ring[0] */
	uint32_t n_avail[2];	    /* available members by family */
};

struct pool__membership {
	uint32_t pool, member;
};

struct pool__watcher {
	unsigned mask;
	pool_watch_cb cb;
	void *ctx;
};

struct pool_set {
	const struct pool_alloc *alloc;
	uint64_t gen;
	size_t refs; /* 1 for the owner + one per unreleased acquisition */
	bool retired;
	bool firing;
	struct pool_source *src;
	uint32_t n_src;
	uint8_t *flags; /* by source: POOL__AVAIL | families << 1 */
	struct pool *pools;
	uint32_t n_pools;
	uint32_t *src_tab, *pool_tab; /* name -> index + 1, open addressing */
	uint32_t src_mask, pool_mask;
	struct pool__theap theap[2];
	struct pool__watcher *watchers;
	size_t n_watchers, cap_watchers;
	struct pool__membership *mems;
	uint64_t *win_store;
	char *strings;
};

void *pool__calloc(const struct pool_alloc *a, size_t n, size_t size);
void pool__free(const struct pool_alloc *a, void *p);
void pool__set_destroy(struct pool_set *set);
uint64_t pool__hash(const void *key, size_t len, uint64_t seed);
uint64_t pool__mix(uint64_t x);

/* pool_state.c */
void pool__theap_push(struct pool_set *set, int h, uint32_t src, uint64_t t);
void pool__theap_remove(struct pool_set *set, int h, uint32_t src);
void pool__run_due(struct pool_set *set, uint64_t now_ms);
void pool__refresh(struct pool_source *s);
bool pool__compute_capped(const struct pool_source *s);
void pool__rate_refill(struct pool_source *s, uint64_t now_ms);

/* pool_pick.c */
void pool__rr_insert(struct pool *p, uint32_t m, int f);
void pool__rr_remove(struct pool *p, uint32_t m, int f);
int pool__ring_build(struct pool *p);
void pool__ring_free(struct pool *p);

static inline bool pool__avail(const struct pool_set *set, uint32_t src)
{
	return set->flags[src] & POOL__AVAIL;
}

#endif
