/* auth: RFC 1929 username/password verification with a cache of successes.
 *
 * Users carry a crypt(3) hash (`password_hash =`) or a plain password
 * (`password =`). Checking a hash is deliberately slow (yescrypt: tens of
 * ms), so verification is split in two:
 *
 *   r = auth_check_cached(store, user, pass, plen);     loop thread, fast
 *   if (r == AUTH_NEED_SLOW) {
 *           r = auth_verify_slow(store, user, pass, plen);  worker thread
 *           if (r == AUTH_OK)
 *                   auth_cache_put(store, user, pass, plen);  any thread
 *   }
 *
 * The cache never holds a password: it keeps, per user, the SipHash-2-4-128
 * of the verified password under a key drawn from getrandom() when the store
 * is made, and only for successes. A store is built once (auth_store_add)
 * and then only read, apart from the cache, which has its own lock; so after
 * setup every function may be called from any thread. A reload builds a new
 * store, which drops every cached entry with the old one.
 *
 * Unknown users and wrong passwords give the same AUTH_FAIL, and take the
 * same time: once the store holds a hashed user, every failure goes the slow
 * way and costs one crypt(3), an unknown user's against a dummy hash (a
 * random password crypted with the first hashed user's setting, made by
 * auth_store_add), so timing does not tell which user names exist.
 */
#ifndef SOCKPOOL_AUTH_H
#define SOCKPOOL_AUTH_H

#include <stddef.h>

enum auth_result {
	AUTH_FAIL = 0,	    /* unknown user or wrong password */
	AUTH_OK = 1,	    /* password right */
	AUTH_NEED_SLOW = 2, /* hashed user without a cache hit: call auth_verify_slow */
};

struct auth_store;

/* A new empty store with a fresh random cache key.
 * @return the store (free with auth_store_free), NULL with errno set
 *         (ENOMEM, or getrandom's error). */
struct auth_store *auth_store_new(void);

/* Free the store and wipe its cache and key. NULL is allowed. */
void auth_store_free(struct auth_store *store);

/* Add a user with exactly one of a crypt(3) hash or a plain password (both
 * copied). Not thread-safe: call before the store is shared.
 * @return 0; -EINVAL for a name that is empty, longer than 255 bytes, or a
 *         hash that libcrypt does not accept (crypt_checksalt, or crypt
 *         fails on it), or neither or both of hash/plain given; -EEXIST for
 *         a name already added; -ENOMEM. The first hashed user costs one
 *         crypt(3) here (the dummy hash). */
int auth_store_add(struct auth_store *store, const char *name, const char *password_hash,
		   const char *plain);

/* Number of users added. */
size_t auth_store_count(const struct auth_store *store);

/* Fast check, never runs crypt(3). user is NUL-terminated; pass is passlen
 * bytes (may be 0, not NUL-terminated).
 * @return AUTH_OK (plain user with the right password, or a hashed user
 *         whose cache holds this password); AUTH_NEED_SLOW (anything else
 *         when the store has a hashed user: unknown users and wrong passwords
 *         included, so that they cost a crypt like a real check); AUTH_FAIL
 *         (anything else in a store of plain users only). */
enum auth_result auth_check_cached(struct auth_store *store, const char *user, const char *pass,
				   size_t passlen);

/* Full check: runs crypt(3) for hashed users (crypt_rn with its own
 * scratch, so concurrent calls are safe) and compares in constant time;
 * a plain user's right password passes at once. Every failure costs one
 * crypt (against the dummy hash for unknown users, plain users and
 * passwords with a NUL byte) when the store has a hashed user. Does not
 * touch the cache. @return AUTH_OK or AUTH_FAIL. */
enum auth_result auth_verify_slow(const struct auth_store *store, const char *user,
				  const char *pass, size_t passlen);

/* Remember that pass is the right password of user (after auth_verify_slow
 * said AUTH_OK): the user's one cache slot now holds its digest, replacing
 * any earlier one. Unknown and plain-password users are ignored. */
void auth_cache_put(struct auth_store *store, const char *user, const char *pass, size_t passlen);

/* Internal, exposed for the unit test: SipHash-2-4 with 128-bit output. */
void auth__siphash128(const unsigned char key[16], const void *msg, size_t len,
		      unsigned char out[16]);

#endif
