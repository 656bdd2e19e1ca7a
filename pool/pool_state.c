/* pool: source state: suspension windows, caps, expiry, events, outcomes. */
#include "pool_internal.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Elapsed time that tolerates small steps back (several event loops). */
static uint64_t since(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

static bool tnode_less(const struct pool__tnode *a, const struct pool__tnode *b)
{
	return a->t < b->t || (a->t == b->t && a->src < b->src);
}

static void theap_place(struct pool_set *set, int h, uint32_t i, struct pool__tnode n)
{
	set->theap[h].node[i] = n;
	set->src[n.src].tpos[h] = i;
}

static void theap_up(struct pool_set *set, int h, uint32_t i)
{
	struct pool__theap *hp = &set->theap[h];
	struct pool__tnode n = hp->node[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!tnode_less(&n, &hp->node[parent]))
			break;
		theap_place(set, h, i, hp->node[parent]);
		i = parent;
	}
	theap_place(set, h, i, n);
}

static void theap_down(struct pool_set *set, int h, uint32_t i)
{
	struct pool__theap *hp = &set->theap[h];
	struct pool__tnode n = hp->node[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= hp->n)
			break;
		if (c + 1 < hp->n && tnode_less(&hp->node[c + 1], &hp->node[c]))
			c++;
		if (!tnode_less(&hp->node[c], &n))
			break;
		theap_place(set, h, i, hp->node[c]);
		i = c;
	}
	theap_place(set, h, i, n);
}

void pool__theap_push(struct pool_set *set, int h, uint32_t src, uint64_t t)
{
	struct pool__theap *hp = &set->theap[h];
	assert(set->src[src].tpos[h] == POOL__NONE && hp->n < set->n_src);
	hp->node[hp->n] = (struct pool__tnode){t, src};
	set->src[src].tpos[h] = hp->n;
	theap_up(set, h, hp->n++);
}

void pool__theap_remove(struct pool_set *set, int h, uint32_t src)
{
	struct pool__theap *hp = &set->theap[h];
	uint32_t i = set->src[src].tpos[h];
	assert(i != POOL__NONE);
	set->src[src].tpos[h] = POOL__NONE;
	if (i == --hp->n)
		return;
	theap_place(set, h, i, hp->node[hp->n]);
	if (i > 0 && tnode_less(&hp->node[i], &hp->node[(i - 1) / 2]))
		theap_up(set, h, i);
	else
		theap_down(set, h, i);
}

static void theap_update(struct pool_set *set, int h, uint32_t src, uint64_t t)
{
	pool__theap_remove(set, h, src);
	pool__theap_push(set, h, src, t);
}

static void emit(struct pool_set *set, const struct pool_event *ev)
{
	set->firing = true;
	for (size_t i = 0; i < set->n_watchers; i++)
		if (set->watchers[i].mask & POOL_EVENT_MASK(ev->type))
			set->watchers[i].cb(ev, set->watchers[i].ctx);
	set->firing = false;
}

bool pool__compute_capped(const struct pool_source *s)
{
	return (s->max_conn && s->anchor->active >= s->max_conn) || s->rate_blocked;
}

/* Bring the scheduler views (flags, per-pool counts and heaps) in line with
 * the source's state after it changed. */
void pool__refresh(struct pool_source *s)
{
	struct pool_set *set = s->set;
	bool avail = s->state == POOL_STATE_ELIGIBLE && !s->capped;

	if (avail == pool__avail(set, s->index))
		return;
	set->flags[s->index] ^= POOL__AVAIL;
	for (uint32_t i = 0; i < s->mem_n; i++) {
		const struct pool__membership *ms = &set->mems[s->mem_first + i];
		struct pool *p = &set->pools[ms->pool];
		for (int f = 0; f < 2; f++) {
			if (!(s->families & (1u << f)))
				continue;
			if (avail) {
				p->n_avail[f]++;
				pool__rr_insert(p, ms->member, f);
			} else {
				p->n_avail[f]--;
				pool__rr_remove(p, ms->member, f);
			}
		}
	}
}

static void recap(struct pool_source *s)
{
	bool capped = pool__compute_capped(s);
	if (capped != s->capped) {
		s->capped = capped;
		pool__refresh(s);
	}
}

void pool__rate_refill(struct pool_source *s, uint64_t now_ms)
{
	uint64_t full = (uint64_t)s->rate_count * s->rate_period;
	uint64_t el = since(now_ms, s->tokens_ms);

	if (!s->rate_count || el == 0)
		return;
	if (el >= s->rate_period)
		s->tokens = full;
	else
		s->tokens =
		    full - s->tokens <= el * s->rate_count ? full : s->tokens + el * s->rate_count;
	s->tokens_ms = now_ms;
}

static void go_online(struct pool_source *s, uint64_t now_ms, bool resumed)
{
	struct pool_event ev = {
	    .type = POOL_EVENT_ONLINE,
	    .source = s,
	    .reason = s->reason,
	    .now_ms = now_ms,
	    .suspended_until_ms = s->until,
	    .resumed = resumed,
	};
	pool__theap_remove(s->set, 0, s->index);
	s->state = POOL_STATE_ELIGIBLE;
	s->reason = POOL_REASON_NONE;
	s->until = 0;
	pool__refresh(s);
	emit(s->set, &ev);
}

/* Eligible -> suspended, or a new until for an already suspended source. */
static void go_offline(struct pool_source *s, struct pool_event *ev, uint64_t duration_ms,
		       uint64_t now_ms)
{
	uint64_t until = sat_add(now_ms, duration_ms);

	if (s->state == POOL_STATE_SUSPENDED) {
		s->reason = ev->reason;
		s->until = until;
		theap_update(s->set, 0, s->index, until);
		return;
	}
	s->state = POOL_STATE_SUSPENDED;
	s->reason = ev->reason;
	s->until = until;
	s->counters.suspensions++;
	pool__theap_push(s->set, 0, s->index, until);
	pool__refresh(s);
	ev->type = POOL_EVENT_OFFLINE;
	ev->source = s;
	ev->now_ms = now_ms;
	ev->suspended_until_ms = until;
	ev->duration_ms = duration_ms;
	emit(s->set, ev);
}

void pool__run_due(struct pool_set *set, uint64_t now_ms)
{
	struct pool__theap *susp = &set->theap[0], *rate = &set->theap[1];

	while (susp->n && susp->node[0].t <= now_ms)
		go_online(&set->src[susp->node[0].src], now_ms, false);
	while (rate->n && rate->node[0].t <= now_ms) {
		struct pool_source *s = &set->src[rate->node[0].src];
		pool__theap_remove(set, 1, s->index);
		pool__rate_refill(s, now_ms);
		s->rate_blocked = false;
		recap(s);
	}
}

uint64_t pool_expire(struct pool_set *set, uint64_t now_ms)
{
	if (!set || set->retired)
		return UINT64_MAX;
	assert(!set->firing);
	pool__run_due(set, now_ms);
	return set->theap[0].n ? set->theap[0].node[0].t : UINT64_MAX;
}

static uint32_t window_count(const struct pool__window *w, const struct pool_rule *r,
			     uint64_t now_ms)
{
	if (w->cap == 1)
		return w->n;
	uint32_t n = 0;
	for (uint32_t i = 0; i < w->n; i++)
		n += since(now_ms, w->t[(w->head + i) % w->cap]) < r->period_ms;
	return n;
}

/* Record a failure at now; true when the window now holds `cap` failures
 * less than a period apart (always, for immediate). */
static bool window_push(struct pool__window *w, const struct pool_rule *r, uint64_t now_ms)
{
	if (w->n < w->cap) {
		w->t[(w->head + w->n) % w->cap] = now_ms;
		w->n++;
	} else {
		w->t[w->head] = now_ms;
		w->head = (w->head + 1) % w->cap;
	}
	if (w->n < w->cap)
		return false;
	return w->cap == 1 || since(now_ms, w->t[w->head]) < r->period_ms;
}

static void window_clear(struct pool__window *w)
{
	w->n = 0;
	w->head = 0;
}

/* The source that reports about `src` apply to: itself while its set is live,
 * else the newest live generation with the same name and identity. */
static struct pool_source *live(struct pool_source *src)
{
	return src->set->retired ? src->anchor->tail : src;
}

/* Every state change starts here: the live version of `src` (NULL when it is
 * gone from the current set), with the expiries due by now_ms run first so
 * the change sees the state as of now. */
static struct pool_source *enter(struct pool_source *src, uint64_t now_ms)
{
	if (!(src = live(src)))
		return NULL;
	assert(!src->set->firing);
	pool__run_due(src->set, now_ms);
	return src;
}

int pool_report_success(struct pool_source *src, uint64_t now_ms)
{
	if (!src)
		return -EINVAL;
	if (!(src = enter(src, now_ms)))
		return -ESTALE;
	src->counters.successes++;
	src->health.has_success = true;
	src->health.last_success_ms = now_ms;
	window_clear(&src->win[0]);
	window_clear(&src->win[1]);
	struct pool_event ev = {.type = POOL_EVENT_SUCCESS, .source = src, .now_ms = now_ms};
	emit(src->set, &ev);
	return 0;
}

static void note_failure(struct pool_source *s, enum pool_failure kind, int err, uint64_t now_ms)
{
	s->health.has_failure = true;
	s->health.last_failure_kind = kind;
	s->health.last_failure_err = err;
	s->health.last_failure_ms = now_ms;
}

/* One failure of `kind` on a live source. `absent` (the address is gone
 * from the host) fires the rule at once, whatever its trigger: there is no
 * window to fill when the host itself says the source cannot work. */
static void record_failure(struct pool_source *src, enum pool_failure kind, int err, bool absent,
			   uint64_t now_ms)
{
	struct pool_event ev = {
	    .type = POOL_EVENT_FAILURE,
	    .source = src,
	    .kind = kind,
	    .err = err < 0 ? -err : err,
	    .now_ms = now_ms,
	};
	src->counters.failures[kind]++;
	note_failure(src, kind, ev.err, now_ms);
	if (kind == POOL_FAILURE_PORTS_EXHAUSTED) {
		emit(src->set, &ev);
		return;
	}
	const struct pool_rule *r = &src->rule[kind];
	struct pool__window *w = &src->win[kind];
	bool fires = false;
	if (absent) {
		fires = src->state == POOL_STATE_ELIGIBLE && r->enabled;
		ev.errors = ev.trigger_count = 1;
	} else {
		if (src->state == POOL_STATE_ELIGIBLE)
			fires = window_push(w, r, now_ms) && r->enabled;
		ev.errors = window_count(w, r, now_ms);
		ev.trigger_count = w->cap;
		ev.trigger_period_ms = w->cap > 1 ? r->period_ms : 0;
	}
	emit(src->set, &ev);
	if (fires) {
		window_clear(w);
		ev.reason = kind == POOL_FAILURE_UNPLUMBED ? POOL_REASON_UNPLUMBED
							   : POOL_REASON_PROXY_UNHEALTHY;
		go_offline(src, &ev, r->duration_ms, now_ms);
	}
}

int pool_report_failure(struct pool_source *src, enum pool_failure kind, int err, uint64_t now_ms)
{
	if (!src || (kind != POOL_FAILURE_UNPLUMBED && kind != POOL_FAILURE_PROXY_UNHEALTHY &&
		     kind != POOL_FAILURE_PORTS_EXHAUSTED))
		return -EINVAL;
	if (!(src = enter(src, now_ms)))
		return -ESTALE;
	record_failure(src, kind, err, false, now_ms);
	return 0;
}

int pool_report_absent(struct pool_source *src, int err, uint64_t now_ms)
{
	if (!src)
		return -EINVAL;
	if (!(src = enter(src, now_ms)))
		return -ESTALE;
	record_failure(src, POOL_FAILURE_UNPLUMBED, err, true, now_ms);
	return 0;
}

int pool_report_check_ok(struct pool_source *src, bool resume, uint64_t now_ms)
{
	if (!src)
		return -EINVAL;
	if (!(src = enter(src, now_ms)))
		return -ESTALE;
	src->health.has_success = true;
	src->health.last_success_ms = now_ms;
	window_clear(&src->win[POOL_FAILURE_PROXY_UNHEALTHY]);
	if (!resume || src->state != POOL_STATE_SUSPENDED ||
	    src->reason != POOL_REASON_PROXY_UNHEALTHY)
		return 0;
	go_online(src, now_ms, true);
	return 1;
}

int pool_source_suspend(struct pool_source *src, uint64_t duration_ms, uint64_t now_ms)
{
	if (!src || duration_ms == 0)
		return -EINVAL;
	if (!(src = enter(src, now_ms)))
		return -ESTALE;
	struct pool_event ev = {.reason = POOL_REASON_MANUAL};
	go_offline(src, &ev, duration_ms, now_ms);
	return 0;
}

int pool_source_resume(struct pool_source *src, uint64_t now_ms)
{
	if (!src)
		return -EINVAL;
	if (!(src = enter(src, now_ms)))
		return -ESTALE;
	if (src->state != POOL_STATE_SUSPENDED)
		return -EALREADY;
	go_online(src, now_ms, true);
	return 0;
}

/* max_connections counts on the shared anchor: every live generation re-checks. */
static void recap_generations(struct pool__anchor *a)
{
	for (struct pool_source *g = a->head; g; g = g->anext)
		recap(g);
}

int pool_source_acquire(struct pool_source *src, uint64_t now_ms)
{
	if (!src)
		return -EINVAL;
	struct pool_set *set = src->set;
	if (set->retired)
		return -ESTALE;
	assert(!set->firing);
	pool__run_due(set, now_ms);
	if (src->state == POOL_STATE_SUSPENDED)
		return -EAGAIN;
	if (src->capped)
		return -EBUSY;
	src->anchor->active++;
	set->refs++;
	if (src->rate_count) {
		pool__rate_refill(src, now_ms);
		assert(src->tokens >= src->rate_period);
		src->tokens -= src->rate_period;
		if (src->tokens < src->rate_period) {
			uint64_t need = src->rate_period - src->tokens;
			src->rate_blocked = true;
			src->rate_ready =
			    src->tokens_ms + (need + src->rate_count - 1) / src->rate_count;
			pool__theap_push(set, 1, src->index, src->rate_ready);
		}
	}
	recap_generations(src->anchor);
	return 0;
}

void pool_source_release(struct pool_source *src)
{
	if (!src)
		return;
	struct pool_set *set = src->set;
	assert(src->anchor->active > 0 && set->refs > (set->retired ? 0u : 1u));
	assert(!set->firing);
	if (src->anchor->active)
		src->anchor->active--;
	recap_generations(src->anchor);
	if (--set->refs == 0)
		pool__set_destroy(set);
}

void pool_source_get_info(const struct pool_source *src, uint64_t now_ms,
			  struct pool_source_info *out)
{
	memset(out, 0, sizeof(*out));
	out->name = src->name;
	out->identity = src->identity;
	out->ref = src->ref;
	out->families = src->families;
	out->state = src->state;
	out->reason = src->reason;
	out->suspended_until_ms = src->until;
	out->counters = src->counters;
	for (int k = 0; k < 2; k++)
		out->window_errors[k] = window_count(&src->win[k], &src->rule[k], now_ms);
	out->active = src->anchor->active;
	out->at_cap = src->capped;
	out->health = src->health;
}

void pool_tried_init(struct pool_tried *tried)
{
	memset(tried, 0, sizeof(*tried));
}

int pool_tried_add(struct pool_tried *tried, const struct pool_source *src)
{
	if (!tried || !src)
		return -EINVAL;
	if (tried->gen != src->set->gen) {
		tried->gen = src->set->gen;
		tried->n = 0;
	}
	for (uint32_t i = 0; i < tried->n; i++)
		if (tried->idx[i] == src->index)
			return 0;
	if (tried->n >= POOL_TRIED_MAX)
		return -ENOSPC;
	tried->idx[tried->n++] = src->index;
	return 0;
}
