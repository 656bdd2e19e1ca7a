/* stat: counters with one writer thread and readers on other threads.
 *
 * Internal to proxy/. Each worker updates only its own statistics, on its
 * own thread, and the admin endpoint sums them on the main thread at scrape
 * time. A counter written by one thread needs no atomic read-modify-write,
 * only loads and stores that cannot tear and that the compiler does not
 * split or cache: relaxed atomic loads and stores, which on x86-64 and
 * arm64 are plain moves. Readers may see one counter a moment behind
 * another; each one on its own only ever grows (or, for gauges, is a value
 * it really had). ThreadSanitizer knows these as atomics, so it stays quiet.
 */
#ifndef SOCKPOOL_STAT_H
#define SOCKPOOL_STAT_H

#include <stdint.h>

/* Writer side: only the thread that owns the counter. */
static inline void stat_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void stat_sub(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) - n, __ATOMIC_RELAXED);
}

static inline void stat_add_double(double *c, double v)
{
	double now;

	__atomic_load(c, &now, __ATOMIC_RELAXED);
	now += v;
	__atomic_store(c, &now, __ATOMIC_RELAXED);
}

/* Reader side: any thread. */
static inline uint64_t stat_get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static inline double stat_get_double(const double *c)
{
	double v;

	__atomic_load(c, &v, __ATOMIC_RELAXED);
	return v;
}

#endif
