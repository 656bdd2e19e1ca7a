/* gen: one generation of the running configuration: the conf, the pool set
 * built from it, the user store, and the lookup tables the request path uses.
 *
 * Internal to proxy/. A generation owns its `struct conf`, its pool set and
 * its auth store, and frees all three at its last proxy_gen_unref(). The
 * proxy holds one reference to the current generation and every session one
 * to the generation it started with, so a reload never frees what a live
 * connection reads. Pointers returned by the lookups below stay valid as long
 * as the caller holds its reference. Every lookup is O(log n) over tables
 * built once in proxy_gen_new(): nothing on the request path walks the conf.
 */
#ifndef SOCKPOOL_GEN_H
#define SOCKPOOL_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "conf.h"

struct pool;
struct pool_set;
struct pool_source;
struct auth_store;
struct gen_index;
struct poolsync;

struct proxy_gen {
	struct conf *conf;	 /* owned */
	struct pool_set *pools;	 /* owned, used under sync's lock */
	struct poolsync *sync;	 /* the process's pool lock; NULL = none (--check) */
	struct auth_store *auth; /* owned */
	atomic_uint refs;	 /* the process's and each worker's, plus one per session */
	size_t default_pool;	 /* conf pool index of server.default_pool */
	struct gen_index *index; /* owned: the lookup tables below */
};

/* Build the pools, users and lookup tables of `conf`, carrying the state of
 * unchanged sources over from `old` (may be NULL) under the pool lock `sync`
 * (NULL = none; a reload takes old's). Ownership of `conf` passes to the call
 * whether it succeeds or not: on failure it is freed.
 * @return 0 and *out (one reference, drop it with proxy_gen_unref), or
 *         -EINVAL / -ENOMEM with a message in err. */
int proxy_gen_new(struct conf *conf, const struct proxy_gen *old, struct poolsync *sync,
		  struct proxy_gen **out, char *err, size_t errlen);

/* Take one more reference, from any thread that holds one (or the lock
 * under which the process swaps its current generation). */
void proxy_gen_ref(struct proxy_gen *gen);

/* Drop one reference, from any thread; the last one frees the generation and
 * its conf (its pool set under the pool lock). NULL is a no-op. */
void proxy_gen_unref(struct proxy_gen *gen);

/* Index of the address source (`address =`) whose address is `addr` (port
 * ignored; v4-mapped compares as IPv4). @return index or -ENOENT. */
int gen_find_source(const struct proxy_gen *gen, const struct sockaddr *addr);

/* Index of the user called `name`. @return index or -ENOENT. */
int gen_find_user(const struct proxy_gen *gen, const char *name);

/* Index of the pool called `name`. @return index or -ENOENT. */
int gen_find_pool(const struct proxy_gen *gen, const char *name);

/* The conf pool index of user `user`'s `pool =`, or -ENOENT when the user
 * has none (the listener's or the default pool applies). */
int gen_user_pool(const struct proxy_gen *gen, size_t user);

/* Whether conf pool `pool` lists source `src` with a weight above 0. */
bool gen_pool_has(const struct proxy_gen *gen, size_t pool, size_t src);

/* The conf source behind a pool source of this generation. */
const struct conf_source *gen_conf_source(const struct proxy_gen *gen,
					  const struct pool_source *src);

/* The pool source of conf source `index`, or NULL when out of range. */
struct pool_source *gen_pool_source(const struct proxy_gen *gen, size_t index);

/* The pool of conf pool index `index`, or NULL when out of range. */
struct pool *gen_pool(const struct proxy_gen *gen, size_t index);

#endif
