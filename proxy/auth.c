/* auth: password verification with a cache of keyed digests, see auth.h. */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DIGEST_LEN   16
#define NAME_MAX_LEN 255

struct auth_user {
	char *name;
	char *hash;  /* crypt(3) string, or NULL */
	char *plain; /* plain password, or NULL */
	size_t plain_len;
	bool cached; /* digest holds a verified password (under store->lock) */
	uint8_t digest[DIGEST_LEN];
};

struct auth_store {
	struct auth_user **slots; /* open addressing, linear probing */
	size_t cap;		  /* power of two, 0 when empty */
	size_t count;
	pthread_mutex_t lock; /* guards the cached/digest fields */
	uint8_t key[16];      /* SipHash key for digests and the table */
	char *dummy;	      /* crypt of a random password, NULL without hashed users */
};

/* SipHash-2-4 with 128-bit output, streaming: it keys the digest of a
 * verified login in the cache, so the cache never holds a password. */
struct sip {
	uint64_t v0, v1, v2, v3;
	uint64_t tail; /* pending bytes, little-endian */
	size_t ntail;
	uint64_t total;
};

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static void sip_round(struct sip *s)
{
	s->v0 += s->v1;
	s->v1 = rotl(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = rotl(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = rotl(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = rotl(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = rotl(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = rotl(s->v2, 32);
}

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void sip_init(struct sip *s, const uint8_t key[16])
{
	uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);

	s->v0 = k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
	s->v2 = k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k1 ^ 0x7465646279746573ULL;
	s->tail = 0;
	s->ntail = 0;
	s->total = 0;
}

static void sip_block(struct sip *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	sip_round(s);
	s->v0 ^= m;
}

static void sip_update(struct sip *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->total += len;
	while (len > 0) {
		s->tail |= (uint64_t)*p++ << (8 * s->ntail);
		len--;
		if (++s->ntail == 8) {
			sip_block(s, s->tail);
			s->tail = 0;
			s->ntail = 0;
		}
	}
}

static void sip_final(struct sip *s, uint8_t out[16])
{
	sip_block(s, s->tail | (s->total & 0xff) << 56);
	s->v2 ^= 0xee;
	for (int i = 0; i < 4; i++)
		sip_round(s);
	store_le64(out, s->v0 ^ s->v1 ^ s->v2 ^ s->v3);
	s->v1 ^= 0xdd;
	for (int i = 0; i < 4; i++)
		sip_round(s);
	store_le64(out + 8, s->v0 ^ s->v1 ^ s->v2 ^ s->v3);
	explicit_bzero(s, sizeof(*s));
}

void auth__siphash128(const unsigned char key[16], const void *msg, size_t len,
		      unsigned char out[16])
{
	struct sip s;

	sip_init(&s, key);
	sip_update(&s, msg, len);
	sip_final(&s, out);
}

/* Equal in time that depends on the lengths only, never on the contents. */
static bool ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	const volatile uint8_t *x = a, *y = b;
	size_t n = alen < blen ? alen : blen;
	uint8_t diff = alen != blen;

	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

/* The cache digest of a password: keyed, and bound to the user so equal
 * passwords of two users do not give equal digests. */
static void password_digest(const struct auth_store *store, const struct auth_user *u,
			    const char *pass, size_t passlen, uint8_t out[DIGEST_LEN])
{
	struct sip s;
	uint8_t nlen = (uint8_t)strlen(u->name);

	sip_init(&s, store->key);
	sip_update(&s, &nlen, 1);
	sip_update(&s, u->name, nlen);
	sip_update(&s, pass, passlen);
	sip_final(&s, out);
}

static size_t name_slot(const struct auth_store *store, const char *name, size_t len)
{
	uint8_t h[16];

	auth__siphash128(store->key, name, len, h);
	return (size_t)load_le64(h) & (store->cap - 1);
}

static struct auth_user *find_user(const struct auth_store *store, const char *name)
{
	size_t len, i;

	if (store == NULL || name == NULL || store->cap == 0)
		return NULL;
	len = strnlen(name, NAME_MAX_LEN + 1);
	if (len == 0 || len > NAME_MAX_LEN)
		return NULL;
	for (i = name_slot(store, name, len); store->slots[i] != NULL;
	     i = (i + 1) & (store->cap - 1))
		if (strcmp(store->slots[i]->name, name) == 0)
			return store->slots[i];
	return NULL;
}

static int grow(struct auth_store *store)
{
	size_t old_cap = store->cap, new_cap = old_cap ? old_cap * 2 : 8;
	struct auth_user **old = store->slots, **slots = calloc(new_cap, sizeof(*slots));

	if (slots == NULL)
		return -ENOMEM;
	store->slots = slots;
	store->cap = new_cap;
	for (size_t j = 0; j < old_cap; j++) {
		struct auth_user *u = old[j];
		size_t i;

		if (u == NULL)
			continue;
		for (i = name_slot(store, u->name, strlen(u->name)); slots[i] != NULL;
		     i = (i + 1) & (new_cap - 1))
			;
		slots[i] = u;
	}
	free(old);
	return 0;
}

static void user_free(struct auth_user *u)
{
	if (u == NULL)
		return;
	free(u->name);
	free(u->hash);
	if (u->plain != NULL) {
		explicit_bzero(u->plain, u->plain_len);
		free(u->plain);
	}
	explicit_bzero(u, sizeof(*u));
	free(u);
}

/* crypt(3) of phrase (passlen bytes, no NUL inside) with `setting`.
 * @return a malloc'd result, NULL on failure or out of memory. */
static char *crypt_dup(const char *pass, size_t passlen, const char *setting)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	char *phrase = malloc(passlen + 1), *res = NULL;
	const char *out;

	/* 32 KiB of scratch: on the heap, worker threads may have small stacks. */
	if (cd == NULL || phrase == NULL)
		goto out;
	if (passlen > 0)
		memcpy(phrase, pass, passlen);
	phrase[passlen] = '\0';
	out = crypt_rn(phrase, setting, cd, (int)sizeof(*cd));
	if (out != NULL && out[0] != '*')
		res = strdup(out);
out:
	if (phrase != NULL) {
		explicit_bzero(phrase, passlen + 1);
		free(phrase);
	}
	if (cd != NULL) {
		explicit_bzero(cd, sizeof(*cd));
		free(cd);
	}
	return res;
}

/* The hash unknown users are checked against, so that they cost what a
 * known user costs: a random password crypted with the first hashed user's
 * setting (same method, same cost, same salt length). */
static int make_dummy(struct auth_store *store, const char *setting)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t rnd[16];
	char pw[2 * sizeof(rnd)];
	size_t got = 0;

	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);
		if (n < 0 && errno != EINTR)
			return -errno;
		got += n > 0 ? (size_t)n : 0;
	}
	for (size_t i = 0; i < sizeof(rnd); i++) {
		pw[2 * i] = digits[rnd[i] >> 4];
		pw[2 * i + 1] = digits[rnd[i] & 15];
	}
	store->dummy = crypt_dup(pw, sizeof(pw), setting);
	explicit_bzero(rnd, sizeof(rnd));
	explicit_bzero(pw, sizeof(pw));
	return store->dummy ? 0 : -EINVAL;
}

struct auth_store *auth_store_new(void)
{
	struct auth_store *store = calloc(1, sizeof(*store));
	size_t got = 0;

	if (store == NULL)
		return NULL;
	while (got < sizeof(store->key)) {
		ssize_t n = getrandom(store->key + got, sizeof(store->key) - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		got += (size_t)n;
	}
	if (pthread_mutex_init(&store->lock, NULL) != 0) {
		errno = ENOMEM;
		goto fail;
	}
	return store;
fail:
	explicit_bzero(store, sizeof(*store));
	free(store);
	return NULL;
}

void auth_store_free(struct auth_store *store)
{
	if (store == NULL)
		return;
	for (size_t i = 0; i < store->cap; i++)
		user_free(store->slots[i]);
	free(store->slots);
	free(store->dummy);
	pthread_mutex_destroy(&store->lock);
	explicit_bzero(store, sizeof(*store));
	free(store);
}

int auth_store_add(struct auth_store *store, const char *name, const char *password_hash,
		   const char *plain)
{
	struct auth_user *u;
	size_t len, i;
	int rc;

	if (store == NULL || name == NULL || (password_hash == NULL) == (plain == NULL))
		return -EINVAL;
	len = strnlen(name, NAME_MAX_LEN + 1);
	if (len == 0 || len > NAME_MAX_LEN)
		return -EINVAL;
	if (password_hash != NULL) {
		int salt = crypt_checksalt(password_hash);

		if (salt != CRYPT_SALT_OK && salt != CRYPT_SALT_METHOD_LEGACY &&
		    salt != CRYPT_SALT_TOO_CHEAP)
			return -EINVAL;
	}
	if (find_user(store, name) != NULL)
		return -EEXIST;
	if ((store->count + 1) * 2 > store->cap) {
		rc = grow(store);
		if (rc < 0)
			return rc;
	}

	if (password_hash != NULL && store->dummy == NULL) {
		rc = make_dummy(store, password_hash);
		if (rc < 0)
			return rc;
	}

	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return -ENOMEM;
	u->name = strdup(name);
	if (u->name == NULL)
		goto nomem;
	if (password_hash != NULL) {
		u->hash = strdup(password_hash);
		if (u->hash == NULL)
			goto nomem;
	} else {
		u->plain_len = strlen(plain);
		u->plain = strdup(plain);
		if (u->plain == NULL)
			goto nomem;
	}

	for (i = name_slot(store, name, len); store->slots[i] != NULL;
	     i = (i + 1) & (store->cap - 1))
		;
	store->slots[i] = u;
	store->count++;
	return 0;
nomem:
	user_free(u);
	return -ENOMEM;
}

size_t auth_store_count(const struct auth_store *store)
{
	return store ? store->count : 0;
}

enum auth_result auth_check_cached(struct auth_store *store, const char *user, const char *pass,
				   size_t passlen)
{
	struct auth_user *u = find_user(store, user);
	/* Without hashed users nothing is slow, so nothing has to look slow. */
	enum auth_result fail = store != NULL && store->dummy != NULL ? AUTH_NEED_SLOW : AUTH_FAIL;
	uint8_t d[DIGEST_LEN];
	bool hit;

	if (pass == NULL && passlen > 0)
		return AUTH_FAIL;
	if (u == NULL)
		return fail;
	if (u->plain != NULL)
		return ct_equal(pass, passlen, u->plain, u->plain_len) ? AUTH_OK : fail;
	/* crypt(3) takes a C string: a NUL would cut the password short. The
	 * slow path fails it after a crypt of its own. */
	if (passlen > 0 && memchr(pass, 0, passlen) != NULL)
		return AUTH_NEED_SLOW;

	password_digest(store, u, pass, passlen, d);
	pthread_mutex_lock(&store->lock);
	hit = u->cached && ct_equal(d, sizeof(d), u->digest, sizeof(u->digest));
	pthread_mutex_unlock(&store->lock);
	explicit_bzero(d, sizeof(d));
	return hit ? AUTH_OK : AUTH_NEED_SLOW;
}

enum auth_result auth_verify_slow(const struct auth_store *store, const char *user,
				  const char *pass, size_t passlen)
{
	const struct auth_user *u = find_user(store, user);
	const char *setting;
	bool real, nul;
	char *out;
	enum auth_result r = AUTH_FAIL;

	if (store == NULL || (pass == NULL && passlen > 0))
		return AUTH_FAIL;
	if (u != NULL && u->plain != NULL && ct_equal(pass, passlen, u->plain, u->plain_len))
		return AUTH_OK;
	nul = passlen > 0 && memchr(pass, 0, passlen) != NULL;
	real = u != NULL && u->hash != NULL && !nul;
	setting = real ? u->hash : store->dummy;
	if (setting == NULL)
		return AUTH_FAIL; /* no hashed users: nothing to look like */
	/* A failure costs one crypt, whoever asked: an unknown user, a plain
	 * user's wrong password, a password crypt(3) cannot take. */
	out = crypt_dup(nul ? "" : pass, nul ? 0 : passlen, setting);
	if (out != NULL && real && ct_equal(out, strlen(out), u->hash, strlen(u->hash)))
		r = AUTH_OK;
	free(out);
	return r;
}

void auth_cache_put(struct auth_store *store, const char *user, const char *pass, size_t passlen)
{
	struct auth_user *u = find_user(store, user);
	uint8_t d[DIGEST_LEN];

	if (u == NULL || u->hash == NULL || (pass == NULL && passlen > 0))
		return;
	if (passlen > 0 && memchr(pass, 0, passlen) != NULL)
		return;
	password_digest(store, u, pass, passlen, d);
	pthread_mutex_lock(&store->lock);
	memcpy(u->digest, d, sizeof(d));
	u->cached = true;
	pthread_mutex_unlock(&store->lock);
	explicit_bzero(d, sizeof(d));
}
