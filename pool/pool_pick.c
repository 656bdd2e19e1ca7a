/* pool: selection strategies.
 *
 * Small tiers (<= POOL_SWRR_MAX members): nginx's smooth weighted round-robin
 * over the candidates of the request, exact. Large tiers: one min-heap per
 * family of members ordered by the virtual time of their next turn,
 * (2k+1)/(2w) after k turns (Sainte-Laguë), ordered exactly (fixed-point keys,
 * integer products on ties); O(log n) per pick, and every W picks (W = total
 * weight) each member has had exactly w turns while the candidates stay the
 * same. Hash pools: a ring of 40-bit positions, points proportional to weight,
 * one ring per family, with a bucket index over the top 16 bits in front of
 * the binary search; a pick walks clockwise past unavailable points. */
#include "pool_internal.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#define RING_POINTS_MAX (UINT64_C(1) << 20) /* points budget of one ring */
#define RING_SHIFT_MAX	7		    /* at most 128 points per unit of weight */
#define RING_LUT_BITS	16
#define KEY_SEED	UINT64_C(0x736f636b706f6f6c)
#define POINT_STEP	UINT64_C(0x9e3779b97f4a7c15)
#define RING_SRC_BITS	24 /* point = position << 24 | source */
#define RING_SRC_MASK	((UINT64_C(1) << RING_SRC_BITS) - 1)

static bool tried_has(const struct pool_tried *t, uint32_t src)
{
	uint32_t n = t->n < POOL_TRIED_MAX ? t->n : POOL_TRIED_MAX;
	for (uint32_t i = 0; i < n; i++)
		if (t->idx[i] == src)
			return true;
	return false;
}

static uint64_t hkey(const struct pool__rrheap *h, uint32_t m)
{
	return ((2 * h->k[m] + 1) << POOL__KEY_SHIFT) / (2 * (uint64_t)h->w[m]);
}

/* Distinct deadlines differ by at least 1/(2 wa wb). With weights up to 2^14
 * that is 2^-29, more than the key's resolution, so equal keys are equal
 * deadlines; so are equal keys of equal weights (the k must be equal too).
 * Only heavier mixed weights need the exact products. */
static bool hless(const struct pool__rrheap *h, struct pool__hnode a, struct pool__hnode b)
{
	if (a.d != b.d)
		return a.d < b.d;
	if (h->d_exact || a.w == b.w)
		return a.m < b.m;
	uint64_t l = (2 * h->k[a.m] + 1) * b.w, r = (2 * h->k[b.m] + 1) * a.w;
	return l < r || (l == r && a.m < b.m);
}

static void hplace(struct pool__rrheap *h, uint32_t i, struct pool__hnode n)
{
	h->node[i] = n;
	h->pos[n.m] = i;
}

static void hup(struct pool__rrheap *h, uint32_t i, struct pool__hnode n)
{
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!hless(h, n, h->node[parent]))
			break;
		hplace(h, i, h->node[parent]);
		i = parent;
	}
	hplace(h, i, n);
}

/* Floyd: pull the smaller child up to the leaves, then sift n up from there.
 * A member that just had its turn usually belongs near the bottom. */
static void hdown(struct pool__rrheap *h, uint32_t i, struct pool__hnode n)
{
	uint32_t c;
	while ((c = 2 * i + 1) < h->n) {
		if (c + 1 < h->n)
			c += hless(h, h->node[c + 1], h->node[c]);
		hplace(h, i, h->node[c]);
		i = c;
	}
	hup(h, i, n);
}

static void hpush(struct pool__rrheap *h, struct pool__hnode n)
{
	hup(h, h->n++, n);
}

static struct pool__hnode hremove(struct pool__rrheap *h, uint32_t i)
{
	struct pool__hnode n = h->node[i];
	h->pos[n.m] = POOL__NONE;
	if (i == --h->n)
		return n;
	struct pool__hnode last = h->node[h->n];
	if (i > 0 && hless(h, last, h->node[(i - 1) / 2]))
		hup(h, i, last);
	else
		hdown(h, i, last);
	return n;
}

/* A member (re)joins at the current virtual time, never earlier than where it
 * left: it neither loses turns nor collects a burst for its time away. */
void pool__rr_insert(struct pool *p, uint32_t m, int f)
{
	struct pool__tier *t = &p->tiers[p->members[m].tier];
	if (!t->large)
		return;
	struct pool__rrheap *h = &t->heap[f];
	uint32_t local = m - t->first;
	if (h->vw) {
		/* smallest k with (2k+1)/(2w) >= (2vk+1)/(2vw) */
		uint64_t num = (2 * h->vk + 1) * h->w[local];
		if (num > h->vw) {
			uint64_t j = (num - h->vw + 2 * h->vw - 1) / (2 * h->vw);
			if (j > h->k[local])
				h->k[local] = j;
		}
	}
	assert(h->pos[local] == POOL__NONE);
	hpush(h, (struct pool__hnode){hkey(h, local), local, h->w[local]});
}

void pool__rr_remove(struct pool *p, uint32_t m, int f)
{
	struct pool__tier *t = &p->tiers[p->members[m].tier];
	if (!t->large)
		return;
	struct pool__rrheap *h = &t->heap[f];
	uint32_t local = m - t->first;
	assert(h->pos[local] != POOL__NONE);
	hremove(h, h->pos[local]);
}

/* Keep virtual time V under POOL__REBASE_ROUNDS rounds. Every member's k is
 * at most (V + 1) * w + 1 (in the heap it is never more than one turn ahead;
 * out of it, it left at an earlier V; joining sets it from V), so k stays
 * below 1025 * POOL_WEIGHT_MAX < 2^31, and keys ((2k+1) << 30) and exact
 * products ((2k+1) * w < 2^52) fit in 64 bits. Moving every member back by
 * the same whole number of rounds (k -= rounds * w) keeps the order and the
 * fixed-point keys exact. */
static void rr_rebase(struct pool__tier *t, int f)
{
	struct pool__rrheap *h = &t->heap[f];
	uint64_t rounds = UINT64_MAX;
	for (uint32_t i = 0; i < h->n; i++) {
		uint32_t m = h->node[i].m;
		if (h->k[m] / h->w[m] < rounds)
			rounds = h->k[m] / h->w[m];
	}
	if (rounds < 2 || rounds == UINT64_MAX)
		return;
	rounds--;
	for (uint32_t m = 0; m < t->n; m++)
		h->k[m] -= h->k[m] < rounds * h->w[m] ? h->k[m] : rounds * h->w[m];
	for (uint32_t i = 0; i < h->n; i++)
		h->node[i].d -= rounds << POOL__KEY_SHIFT;
	h->vk -= h->vk < rounds * h->vw ? h->vk : rounds * h->vw;
}

static struct pool__member *rr_heap_pick(struct pool *p, struct pool__tier *t, int f,
					 const struct pool_tried *tried)
{
	struct pool__rrheap *h = &t->heap[f];
	struct pool__hnode stash[POOL_TRIED_MAX];
	struct pool__member *picked = NULL;
	uint32_t ns = 0;

	while (h->n) {
		struct pool__hnode top = h->node[0];
		if (tried && tried_has(tried, p->members[t->first + top.m].src)) {
			/* A source sits once in a heap: at most POOL_TRIED_MAX detours. */
			assert(ns < POOL_TRIED_MAX);
			stash[ns++] = hremove(h, 0);
			continue;
		}
		picked = &p->members[t->first + top.m];
		h->vk = h->k[top.m]++;
		h->vw = h->w[top.m];
		top.d = hkey(h, top.m);
		hdown(h, 0, top);
		if (h->vk / h->vw >= POOL__REBASE_ROUNDS)
			rr_rebase(t, f);
		break;
	}
	while (ns)
		hpush(h, stash[--ns]);
	return picked;
}

static struct pool__member *swrr_pick(struct pool *p, const struct pool__tier *t, unsigned fbit,
				      const struct pool_tried *tried)
{
	const uint8_t *flags = p->set->flags;
	const uint8_t need = (uint8_t)(POOL__AVAIL | fbit << POOL__FAM_SHIFT);
	struct pool__member *mb = &p->members[t->first], *end = mb + t->n, *best = NULL;
	int64_t total = 0, best_cw = INT64_MIN;

	for (; mb < end; mb++) {
		if ((flags[mb->src] & need) != need || (tried && tried_has(tried, mb->src)))
			continue;
		int64_t cw = mb->cw + mb->weight;
		mb->cw = cw;
		total += mb->weight;
		/* strictly greater: the first of equals wins, as in nginx */
		bool better = cw > best_cw;
		best_cw = better ? cw : best_cw;
		best = better ? mb : best;
	}
	if (best)
		best->cw -= total;
	return best;
}

/* Points of a member: weight scaled by a power of two chosen from the pool's
 * total weight, so that removing one source rarely changes anyone else's. */
static uint64_t ring_points(uint32_t weight, int shift)
{
	if (shift >= 0)
		return (uint64_t)weight << shift;
	uint64_t pts = ((uint64_t)weight + (UINT64_C(1) << (-shift - 1))) >> -shift;
	return pts ? pts : 1;
}

static void ring_destroy(const struct pool_alloc *a, struct pool__ring *r)
{
	if (!r)
		return;
	pool__free(a, r->pt);
	pool__free(a, r->lut);
	pool__free(a, r);
}

void pool__ring_free(struct pool *p)
{
	if (!p->ring[0] && !p->ring[1])
		return;
	const struct pool_alloc *a = p->set->alloc;
	if (p->ring[1] != p->ring[0])
		ring_destroy(a, p->ring[1]);
	ring_destroy(a, p->ring[0]);
	p->ring[0] = p->ring[1] = NULL;
}

/* LSD radix sort on the position bits only, 11 bits a pass (4 passes). */
static void radix_sort(uint64_t *v, uint64_t *tmp, uint32_t n)
{
	for (int shift = RING_SRC_BITS; shift < 64; shift += 11) {
		uint32_t count[2049] = {0};
		for (uint32_t i = 0; i < n; i++)
			count[((v[i] >> shift) & 0x7ff) + 1]++;
		for (int b = 0; b < 2048; b++)
			count[b + 1] += count[b];
		for (uint32_t i = 0; i < n; i++)
			tmp[count[(v[i] >> shift) & 0x7ff]++] = v[i];
		memcpy(v, tmp, (size_t)n * sizeof(*v));
	}
}

static uint64_t point_tiebreak(const struct pool_set *set, uint64_t pt)
{
	const char *name = set->src[(uint32_t)(pt & RING_SRC_MASK)].name;
	return pool__hash(name, strlen(name), 0);
}

/* Points at the same position (rare) are ordered by their source's name hash,
 * not its index, which a reload may change: the ring must not depend on the
 * other sources present. */
static void order_ties(const struct pool_set *set, uint64_t *pt, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++) {
		if ((pt[i] >> RING_SRC_BITS) != (pt[i - 1] >> RING_SRC_BITS))
			continue;
		uint64_t x = pt[i], key = point_tiebreak(set, x);
		uint32_t j = i;
		while (j > 0 && (pt[j - 1] >> RING_SRC_BITS) == (x >> RING_SRC_BITS) &&
		       point_tiebreak(set, pt[j - 1]) > key) {
			pt[j] = pt[j - 1];
			j--;
		}
		pt[j] = x;
	}
}

static int ring_build_family(struct pool *p, unsigned fbit, int shift, struct pool__ring **out)
{
	const struct pool_alloc *a = p->set->alloc;
	uint64_t total = 0;

	for (uint32_t m = 0; m < p->n_members; m++)
		if (p->set->src[p->members[m].src].families & fbit)
			total += ring_points(p->members[m].weight, shift);
	if (total == 0)
		return 0;

	struct pool__ring *r = pool__calloc(a, 1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	*out = r;
	r->n = (uint32_t)total;
	r->bits = 1;
	while (r->bits < RING_LUT_BITS && (UINT64_C(2) << r->bits) <= total)
		r->bits++;
	uint64_t *tmp = pool__calloc(a, total, sizeof(uint64_t));
	r->pt = pool__calloc(a, total, sizeof(uint64_t));
	r->lut = pool__calloc(a, ((size_t)1 << r->bits) + 1, sizeof(uint32_t));
	if (!tmp || !r->pt || !r->lut) {
		pool__free(a, tmp);
		return -ENOMEM;
	}
	uint32_t at = 0;
	for (uint32_t m = 0; m < p->n_members; m++) {
		const struct pool_source *s = &p->set->src[p->members[m].src];
		if (!(s->families & fbit))
			continue;
		uint64_t base = pool__hash(s->name, strlen(s->name), 0);
		uint64_t n = ring_points(p->members[m].weight, shift);
		for (uint64_t j = 0; j < n; j++)
			r->pt[at++] =
			    (pool__mix(base + (j + 1) * POINT_STEP) & ~RING_SRC_MASK) | s->index;
	}
	radix_sort(r->pt, tmp, r->n);
	pool__free(a, tmp);
	order_ties(p->set, r->pt, r->n);
	uint32_t j = 0;
	for (uint32_t b = 0; b < (UINT32_C(1) << r->bits); b++) {
		while (j < r->n && (r->pt[j] >> (64 - r->bits)) < b)
			j++;
		r->lut[b] = j;
	}
	r->lut[(size_t)1 << r->bits] = r->n;
	return 0;
}

int pool__ring_build(struct pool *p)
{
	uint64_t total = 0;
	bool same = true;
	int shift = RING_SHIFT_MAX, rc;

	for (uint32_t m = 0; m < p->n_members; m++) {
		total += p->members[m].weight;
		same = same && p->set->src[p->members[m].src].families == POOL_FAMILY_ANY;
	}
	if (total == 0)
		return 0;
	while (shift > 0 && (total << shift) > RING_POINTS_MAX)
		shift--;
	while (shift <= 0 && (total >> -shift) > RING_POINTS_MAX)
		shift--;
	if ((rc = ring_build_family(p, POOL_FAMILY_V4, shift, &p->ring[0])))
		return rc;
	if (same) {
		p->ring[1] = p->ring[0];
		return 0;
	}
	return ring_build_family(p, POOL_FAMILY_V6, shift, &p->ring[1]);
}

/* Tried sources that are available members of p for family f. */
static uint32_t tried_available(const struct pool *p, unsigned fbit, const struct pool_tried *tried)
{
	const struct pool_set *set = p->set;
	uint32_t n = tried->n < POOL_TRIED_MAX ? tried->n : POOL_TRIED_MAX, count = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t idx = tried->idx[i];
		if (idx >= set->n_src || !pool__avail(set, idx) || !(set->src[idx].families & fbit))
			continue;
		const struct pool_source *s = &set->src[idx];
		for (uint32_t j = 0; j < s->mem_n; j++)
			if (set->mems[s->mem_first + j].pool == p->index) {
				count++;
				break;
			}
	}
	return count;
}

static struct pool_source *ring_pick(struct pool *p, int f, const struct pool_request *req,
				     const struct pool_tried *tried)
{
	const struct pool__ring *r = p->ring[f];
	uint32_t avail = p->n_avail[f];

	if (!r || !avail)
		return NULL;
	if (tried) {
		uint32_t skip = tried_available(p, 1u << f, tried);
		if (skip >= avail)
			return NULL;
	}
	uint64_t h = pool__hash(req->key, req->key_len, KEY_SEED) & ~RING_SRC_MASK;
	uint32_t b = (uint32_t)(h >> (64 - r->bits)), lo = r->lut[b], hi = r->lut[b + 1];
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (r->pt[mid] < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Walk clockwise past unavailable points; one exists (counted above). */
	for (uint32_t i = lo == r->n ? 0 : lo, step = 0; step < r->n; step++) {
		uint32_t s = (uint32_t)(r->pt[i] & RING_SRC_MASK);
		if (pool__avail(p->set, s) && !(tried && tried_has(tried, s)))
			return &p->set->src[s];
		if (++i == r->n)
			i = 0;
	}
	return NULL;
}

/* Nothing was picked: say why, scanning the candidates. */
static void explain(const struct pool *p, unsigned fbit, const struct pool_tried *tried,
		    struct pool_pick *out)
{
	bool any = false, busy = false;
	uint64_t wait = UINT64_MAX, soon = UINT64_MAX;

	for (uint32_t m = 0; m < p->n_members; m++) {
		const struct pool_source *s = &p->set->src[p->members[m].src];
		if (!(s->families & fbit) || (tried && tried_has(tried, s->index)))
			continue;
		any = true;
		if (s->state == POOL_STATE_SUSPENDED) {
			wait = s->until < wait ? s->until : wait;
		} else {
			assert(s->capped);
			busy = true;
			if (s->rate_blocked && s->rate_ready < soon)
				soon = s->rate_ready;
		}
	}
	if (!any) {
		out->status = POOL_NONE;
	} else if (busy) {
		out->status = POOL_BUSY;
		out->until_ms = wait < soon ? wait : soon;
	} else {
		out->status = POOL_WAIT;
		out->until_ms = wait;
	}
}

int pool_pick(struct pool *pool, const struct pool_request *req, uint64_t now_ms,
	      struct pool_pick *out)
{
	if (!pool || !req || !out ||
	    (req->family != POOL_FAMILY_V4 && req->family != POOL_FAMILY_V6) ||
	    (req->key_len && !req->key))
		return -EINVAL;
	struct pool_set *set = pool->set;
	if (set->retired)
		return -ESTALE;
	assert(!set->firing);
	pool__run_due(set, now_ms);

	const struct pool_tried *tried =
	    req->tried && req->tried->n && req->tried->gen == set->gen ? req->tried : NULL;
	int f = req->family == POOL_FAMILY_V4 ? 0 : 1;
	struct pool_source *s = NULL;

	if (pool->strategy == POOL_STRATEGY_HASH) {
		s = ring_pick(pool, f, req, tried);
	} else {
		for (uint32_t t = 0; t < pool->n_tiers && !s; t++) {
			struct pool__tier *tier = &pool->tiers[t];
			struct pool__member *mb = tier->large
						      ? rr_heap_pick(pool, tier, f, tried)
						      : swrr_pick(pool, tier, req->family, tried);
			s = mb ? &set->src[mb->src] : NULL;
		}
	}
	memset(out, 0, sizeof(*out));
	if (s) {
		s->counters.selected++;
		out->status = POOL_PICKED;
		out->source = s;
		return 0;
	}
	explain(pool, req->family, tried, out);
	return 0;
}
