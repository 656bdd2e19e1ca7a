/* libFuzzer target: the client side of the SOCKS5 codec (sockpool talking
 * to an upstream proxy). The input is what the upstream answers: method
 * selection, RFC 1929 status when it chose PASSWORD, then one or two
 * replies (BIND, CONNECT). The first byte sets the read size. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

enum stage { METHOD, AUTH, REPLY, DONE };

static int parse_copy(enum stage st, const uint8_t *buf, size_t len, size_t *consumed, void *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	CHECK(copy != NULL);
	if (len)
		memcpy(copy, buf, len);
	switch (st) {
	case METHOD:
		rc = socks5_parse_method_reply(copy, len, consumed, out);
		break;
	case AUTH:
		rc = socks5_parse_auth_reply(copy, len, consumed, out);
		break;
	default:
		rc = socks5_parse_reply(copy, len, consumed, out);
		break;
	}
	free(copy);
	return rc;
}

static void check_reply(const struct socks5_reply *r, const uint8_t *msg, size_t len)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	char text[SOCKS5_ADDR_STRLEN];
	struct socks5_reply back;
	struct sockaddr_storage ss;
	socklen_t salen;
	size_t c;
	int n;

	CHECK(socks5_rep_str(r->rep) != NULL);
	CHECK(socks5_addr_str(&r->bnd, text, sizeof(text)) == text);
	CHECK(strlen(text) < sizeof(text));
	/* A reply has the request layout: re-encode it as one and compare. */
	n = socks5_write_request(out, sizeof(out), r->rep, &r->bnd);
	CHECK(n > 0 && (size_t)n == len);
	CHECK(out[0] == msg[0] && out[1] == msg[1] && memcmp(out + 3, msg + 3, len - 3) == 0);
	CHECK(socks5_parse_reply(out, (size_t)n, &c, &back) == SOCKS5_OK && c == len);
	if (socks5_addr_to_sockaddr(&r->bnd, &ss, &salen) == 0) {
		n = socks5_write_reply(out, sizeof(out), r->rep, (const struct sockaddr *)&ss);
		CHECK(n == 10 || n == 22);
		CHECK(socks5_parse_reply(out, (size_t)n, &c, &back) == SOCKS5_OK);
		CHECK(back.bnd.port == r->bnd.port);
	} else {
		CHECK(r->bnd.atyp == SOCKS5_ATYP_DOMAIN);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t chunk, avail = 0, off = 0;
	enum stage st = METHOD;
	unsigned replies = 0;

	if (size < 1)
		return 0;
	chunk = (size_t)data[0] % 32 + 1;
	data++;
	size--;

	while (st != DONE) {
		union {
			struct socks5_method_reply m;
			struct socks5_auth_reply a;
			struct socks5_reply r;
		} m;
		size_t consumed = (size_t)-1, c2 = 0, have;
		const uint8_t *p = data + off;
		int rc;

		if (avail < size)
			avail = avail + chunk < size ? avail + chunk : size;
		have = avail - off;
		rc = parse_copy(st, p, have, &consumed, &m);
		if (rc == SOCKS5_NEED_MORE) {
			CHECK(consumed == (size_t)-1);
			if (avail == size)
				break;
			continue;
		}
		if (rc == SOCKS5_ERROR) {
			const struct socks5_error *err = st == METHOD ? &m.m.err
							 : st == AUTH ? &m.a.err
								      : &m.r.err;

			CHECK(consumed == (size_t)-1);
			CHECK(err->fault != SOCKS5_FAULT_NONE && !err->send_reply);
			break;
		}
		CHECK(rc == SOCKS5_OK && consumed >= 2 && consumed <= have);
		{
			union {
				struct socks5_method_reply m;
				struct socks5_auth_reply a;
				struct socks5_reply r;
			} tmp;

			CHECK(parse_copy(st, p, consumed, &c2, &tmp) == SOCKS5_OK &&
			      c2 == consumed);
			CHECK(parse_copy(st, p, consumed - 1, &c2, &tmp) == SOCKS5_NEED_MORE);
		}
		off += consumed;
		if (avail < off)
			avail = off;

		switch (st) {
		case METHOD:
			if (m.m.method == SOCKS5_METHOD_PASSWORD)
				st = AUTH;
			else if (m.m.method == SOCKS5_METHOD_NONE)
				st = REPLY;
			else
				st = DONE;
			break;
		case AUTH:
			st = m.a.status == 0 ? REPLY : DONE;
			break;
		default:
			check_reply(&m.r, p, consumed);
			st = m.r.rep == 0 && ++replies < 2 ? REPLY : DONE;
			break;
		}
	}
	return 0;
}
