/* libFuzzer target: the server side of the SOCKS5 codec.
 *
 * The first input byte picks the options (password wanted or not, how many
 * bytes arrive per read); the rest is what a client sends. It is fed to the
 * parsers the way the session does: greeting, auth when chosen, then
 * requests (BIND may be followed by another request), each parse on a
 * growing prefix of the stream. Besides "no crash", it checks the codec's
 * promises and aborts when one is broken. */
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

enum stage { GREETING, AUTH, REQUEST, DONE };

/* A parse on a copy of exactly len bytes, so ASan sees any overread. */
static int parse_copy(enum stage st, const uint8_t *buf, size_t len, size_t *consumed, void *out)
{
	uint8_t *copy = malloc(len ? len : 1);
	int rc;

	CHECK(copy != NULL);
	if (len)
		memcpy(copy, buf, len);
	switch (st) {
	case GREETING:
		rc = socks5_parse_greeting(copy, len, consumed, out);
		break;
	case AUTH:
		rc = socks5_parse_auth(copy, len, consumed, out);
		break;
	default:
		rc = socks5_parse_request(copy, len, consumed, out);
		break;
	}
	free(copy);
	return rc;
}

/* An OK parse must be stable: the exact message alone is OK with the same
 * length, and one byte less is NEED_MORE. */
static void check_exact(enum stage st, const uint8_t *buf, size_t consumed)
{
	union {
		struct socks5_greeting g;
		struct socks5_auth a;
		struct socks5_request r;
	} tmp;
	size_t c2 = 0;

	CHECK(parse_copy(st, buf, consumed, &c2, &tmp) == SOCKS5_OK);
	CHECK(c2 == consumed);
	CHECK(parse_copy(st, buf, consumed - 1, &c2, &tmp) == SOCKS5_NEED_MORE);
}

static void check_request(const struct socks5_request *r, const uint8_t *msg, size_t len)
{
	uint8_t out[SOCKS5_REQUEST_MAX];
	struct socks5_request back;
	struct socks5_reply rep;
	struct sockaddr_storage ss;
	socklen_t salen;
	size_t c;
	int n;

	CHECK(r->cmd == SOCKS5_CMD_CONNECT || r->cmd == SOCKS5_CMD_BIND);
	if (r->dst.atyp == SOCKS5_ATYP_DOMAIN) {
		CHECK(r->dst.domain_len >= 1);
		CHECK(strlen(r->dst.u.domain) == r->dst.domain_len);
	}
	/* Re-encoding gives the same bytes, RSV aside. */
	n = socks5_write_request(out, sizeof(out), r->cmd, &r->dst);
	CHECK(n > 0 && (size_t)n == len);
	CHECK(out[0] == msg[0] && out[1] == msg[1] && memcmp(out + 3, msg + 3, len - 3) == 0);
	CHECK(socks5_parse_request(out, (size_t)n, &c, &back) == SOCKS5_OK && c == len);

	/* The reply to it has its address type, and parses back. */
	if (socks5_addr_to_sockaddr(&r->dst, &ss, &salen) == 0) {
		n = socks5_write_reply_atyp(out, sizeof(out), 0, r->dst.atyp,
					    (const struct sockaddr *)&ss);
		CHECK(n == (int)len);
		CHECK(socks5_parse_reply(out, (size_t)n, &c, &rep) == SOCKS5_OK);
		CHECK(c == len && rep.bnd.atyp == r->dst.atyp && rep.bnd.port == r->dst.port);
	}
	n = socks5_write_reply_atyp(out, sizeof(out), 1, r->dst.atyp, NULL);
	CHECK(n > 0 && socks5_parse_reply(out, (size_t)n, &c, &rep) == SOCKS5_OK);
}

/* What the session would send on an error must be buildable. */
static void check_error(enum stage st, const struct socks5_error *err, uint8_t atyp)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	size_t c;
	struct socks5_reply rep;
	int n;

	CHECK(err->fault != SOCKS5_FAULT_NONE);
	CHECK(socks5_fault_str(err->fault) != NULL);
	if (!err->send_reply) {
		CHECK(st == GREETING && err->fault == SOCKS5_FAULT_VERSION);
		return;
	}
	switch (st) {
	case GREETING:
		CHECK(err->code == SOCKS5_METHOD_UNACCEPTABLE);
		CHECK(socks5_write_method(out, err->code) == 2);
		break;
	case AUTH:
		CHECK(err->code == SOCKS5_AUTH_STATUS_FAIL);
		CHECK(socks5_write_auth_status(out, false) == 2);
		break;
	default:
		CHECK(err->code >= 0x01 && err->code <= 0x08);
		n = socks5_write_reply_atyp(out, sizeof(out), err->code, atyp, NULL);
		CHECK(n > 0);
		CHECK(socks5_parse_reply(out, (size_t)n, &c, &rep) == SOCKS5_OK);
		CHECK(rep.rep == err->code && (size_t)n == c);
		CHECK(socks5_rep_str(err->code) != NULL);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool want_password;
	size_t chunk, avail, off = 0;
	enum stage st = GREETING;
	unsigned requests = 0;

	if (size < 1)
		return 0;
	want_password = data[0] & 1;
	chunk = (size_t)(data[0] >> 1) % 24 + 1;
	data++;
	size--;

	avail = 0;
	while (st != DONE) {
		union {
			struct socks5_greeting g;
			struct socks5_auth a;
			struct socks5_request r;
		} m;
		size_t consumed = (size_t)-1;
		const uint8_t *p = data + off;
		size_t have;
		int rc;

		if (avail < size)
			avail = avail + chunk < size ? avail + chunk : size;
		have = avail - off;
		rc = parse_copy(st, p, have, &consumed, &m);
		if (rc == SOCKS5_NEED_MORE) {
			CHECK(consumed == (size_t)-1);
			if (avail == size)
				break; /* the client stopped sending */
			continue;
		}
		if (rc == SOCKS5_ERROR) {
			CHECK(consumed == (size_t)-1);
			check_error(st,
				    st == GREETING ? &m.g.err
				    : st == AUTH   ? &m.a.err
						   : &m.r.err,
				    st == REQUEST ? m.r.dst.atyp : SOCKS5_ATYP_IPV4);
			break;
		}
		CHECK(rc == SOCKS5_OK);
		CHECK(consumed >= 2 && consumed <= have);
		check_exact(st, p, consumed);
		off += consumed;
		if (avail < off)
			avail = off;

		switch (st) {
		case GREETING: {
			uint8_t method = socks5_choose_method(&m.g, want_password);

			CHECK(m.g.nmethods >= 1 && consumed == 2u + m.g.nmethods);
			if (method == SOCKS5_METHOD_UNACCEPTABLE)
				st = DONE;
			else
				st = method == SOCKS5_METHOD_PASSWORD ? AUTH : REQUEST;
			break;
		}
		case AUTH:
			CHECK(m.a.ulen >= 1 && strlen(m.a.user) == m.a.ulen);
			CHECK(consumed == 3u + m.a.ulen + m.a.plen);
			st = REQUEST;
			break;
		default:
			check_request(&m.r, p, consumed);
			/* BIND is followed by a CONNECT (KumoMTA); allow a few. */
			if (m.r.cmd != SOCKS5_CMD_BIND || ++requests > 4)
				st = DONE;
			break;
		}
	}
	return 0;
}
