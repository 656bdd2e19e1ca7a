/* socks5: pure SOCKS5 / RFC 1929 codec, see socks5.h. */
#include "socks5.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int fail(struct socks5_error *err, enum socks5_fault fault, bool send_reply, uint8_t code)
{
	err->fault = fault;
	err->send_reply = send_reply;
	err->code = code;
	return SOCKS5_ERROR;
}

static void clear_err(struct socks5_error *err)
{
	err->fault = SOCKS5_FAULT_NONE;
	err->send_reply = false;
	err->code = 0;
}

static bool atyp_known(uint8_t atyp)
{
	return atyp == SOCKS5_ATYP_IPV4 || atyp == SOCKS5_ATYP_DOMAIN || atyp == SOCKS5_ATYP_IPV6;
}

/* Length of ATYP + ADDR + PORT starting at p[0] = ATYP, given avail bytes.
 * @return the length, 0 if more bytes are needed to know it; atyp must be
 * known. */
static size_t addr_wire_len(const uint8_t *p, size_t avail)
{
	switch (p[0]) {
	case SOCKS5_ATYP_IPV4:
		return 1 + 4 + 2;
	case SOCKS5_ATYP_IPV6:
		return 1 + 16 + 2;
	default:
		if (avail < 2)
			return 0;
		return 1 + 1 + (size_t)p[1] + 2;
	}
}

/* Decode ATYP ADDR PORT (complete, atyp known) into a. @return the fault. */
static enum socks5_fault addr_decode(const uint8_t *p, struct socks5_addr *a)
{
	const uint8_t *port;

	memset(a, 0, sizeof(*a));
	a->atyp = p[0];
	switch (p[0]) {
	case SOCKS5_ATYP_IPV4:
		memcpy(a->u.ipv4, p + 1, 4);
		port = p + 5;
		break;
	case SOCKS5_ATYP_IPV6:
		memcpy(a->u.ipv6, p + 1, 16);
		port = p + 17;
		break;
	default:
		if (p[1] == 0)
			return SOCKS5_FAULT_DOMAIN_LEN;
		if (memchr(p + 2, 0, p[1]) != NULL)
			return SOCKS5_FAULT_DOMAIN_NUL;
		a->domain_len = p[1];
		memcpy(a->u.domain, p + 2, p[1]);
		a->u.domain[p[1]] = '\0';
		port = p + 2 + p[1];
		break;
	}
	a->port = (uint16_t)(port[0] << 8 | port[1]);
	return SOCKS5_FAULT_NONE;
}

/* Encode ATYP ADDR PORT of a valid address. @return bytes written or
 * -EINVAL/-ENOBUFS. */
static int addr_encode(uint8_t *out, size_t cap, const struct socks5_addr *a)
{
	size_t n;

	switch (a->atyp) {
	case SOCKS5_ATYP_IPV4:
		n = 1 + 4 + 2;
		break;
	case SOCKS5_ATYP_IPV6:
		n = 1 + 16 + 2;
		break;
	case SOCKS5_ATYP_DOMAIN:
		if (a->domain_len == 0 || memchr(a->u.domain, 0, a->domain_len) != NULL)
			return -EINVAL;
		n = 1 + 1 + (size_t)a->domain_len + 2;
		break;
	default:
		return -EINVAL;
	}
	if (cap < n)
		return -ENOBUFS;
	out[0] = a->atyp;
	if (a->atyp == SOCKS5_ATYP_IPV4) {
		memcpy(out + 1, a->u.ipv4, 4);
	} else if (a->atyp == SOCKS5_ATYP_IPV6) {
		memcpy(out + 1, a->u.ipv6, 16);
	} else {
		out[1] = a->domain_len;
		memcpy(out + 2, a->u.domain, a->domain_len);
	}
	out[n - 2] = (uint8_t)(a->port >> 8);
	out[n - 1] = (uint8_t)(a->port & 0xff);
	return (int)n;
}

int socks5_parse_greeting(const uint8_t *buf, size_t len, size_t *consumed,
			  struct socks5_greeting *out)
{
	size_t n;

	clear_err(&out->err);
	if (len < 1)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_VERSION)
		return fail(&out->err, SOCKS5_FAULT_VERSION, false, SOCKS5_METHOD_UNACCEPTABLE);
	if (len < 2)
		return SOCKS5_NEED_MORE;
	if (buf[1] == 0)
		return fail(&out->err, SOCKS5_FAULT_NMETHODS, true, SOCKS5_METHOD_UNACCEPTABLE);
	n = 2 + (size_t)buf[1];
	if (len < n)
		return SOCKS5_NEED_MORE;
	out->nmethods = buf[1];
	memcpy(out->methods, buf + 2, buf[1]);
	*consumed = n;
	return SOCKS5_OK;
}

uint8_t socks5_choose_method(const struct socks5_greeting *greeting, bool want_password)
{
	uint8_t want = want_password ? SOCKS5_METHOD_PASSWORD : SOCKS5_METHOD_NONE;

	for (size_t i = 0; i < greeting->nmethods; i++)
		if (greeting->methods[i] == want)
			return want;
	return SOCKS5_METHOD_UNACCEPTABLE;
}

int socks5_parse_auth(const uint8_t *buf, size_t len, size_t *consumed, struct socks5_auth *out)
{
	size_t ulen, plen;

	clear_err(&out->err);
	if (len < 1)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_AUTH_VERSION)
		return fail(&out->err, SOCKS5_FAULT_VERSION, true, SOCKS5_AUTH_STATUS_FAIL);
	if (len < 2)
		return SOCKS5_NEED_MORE;
	ulen = buf[1];
	if (ulen == 0)
		return fail(&out->err, SOCKS5_FAULT_ULEN, true, SOCKS5_AUTH_STATUS_FAIL);
	/* Checked as soon as the name is in, so a bad name fails without
	 * waiting for a password that may never come. */
	if (memchr(buf + 2, 0, len - 2 < ulen ? len - 2 : ulen) != NULL)
		return fail(&out->err, SOCKS5_FAULT_USER_NUL, true, SOCKS5_AUTH_STATUS_FAIL);
	if (len < 2 + ulen + 1)
		return SOCKS5_NEED_MORE;
	plen = buf[2 + ulen];
	if (len < 3 + ulen + plen)
		return SOCKS5_NEED_MORE;
	out->ulen = (uint8_t)ulen;
	memcpy(out->user, buf + 2, ulen);
	out->user[ulen] = '\0';
	out->plen = (uint8_t)plen;
	memcpy(out->pass, buf + 3 + ulen, plen);
	out->pass[plen] = '\0';
	*consumed = 3 + ulen + plen;
	return SOCKS5_OK;
}

int socks5_parse_request(const uint8_t *buf, size_t len, size_t *consumed,
			 struct socks5_request *out)
{
	size_t alen;
	enum socks5_fault fault;

	clear_err(&out->err);
	out->cmd = 0;
	memset(&out->dst, 0, sizeof(out->dst));
	out->dst.atyp = SOCKS5_ATYP_IPV4;
	if (len < 1)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_VERSION)
		return fail(&out->err, SOCKS5_FAULT_VERSION, true, SOCKS5_REP_GENERAL_FAILURE);
	if (len < 4)
		return SOCKS5_NEED_MORE;
	if (!atyp_known(buf[3]))
		return fail(&out->err, SOCKS5_FAULT_ATYP, true, SOCKS5_REP_ATYP_NOT_SUPPORTED);
	out->dst.atyp = buf[3];
	alen = addr_wire_len(buf + 3, len - 3);
	if (alen == 0)
		return SOCKS5_NEED_MORE;
	if (buf[3] == SOCKS5_ATYP_DOMAIN && buf[4] == 0)
		return fail(&out->err, SOCKS5_FAULT_DOMAIN_LEN, true, SOCKS5_REP_HOST_UNREACHABLE);
	if (len < 3 + alen)
		return SOCKS5_NEED_MORE;
	fault = addr_decode(buf + 3, &out->dst);
	if (fault != SOCKS5_FAULT_NONE)
		return fail(&out->err, fault, true, SOCKS5_REP_HOST_UNREACHABLE);
	if (buf[1] != SOCKS5_CMD_CONNECT && buf[1] != SOCKS5_CMD_BIND)
		return fail(&out->err, SOCKS5_FAULT_COMMAND, true, SOCKS5_REP_CMD_NOT_SUPPORTED);
	out->cmd = buf[1];
	*consumed = 3 + alen;
	return SOCKS5_OK;
}

size_t socks5_write_method(uint8_t *out, uint8_t method)
{
	out[0] = SOCKS5_VERSION;
	out[1] = method;
	return 2;
}

size_t socks5_write_auth_status(uint8_t *out, bool ok)
{
	out[0] = SOCKS5_AUTH_VERSION;
	out[1] = ok ? SOCKS5_AUTH_STATUS_OK : SOCKS5_AUTH_STATUS_FAIL;
	return 2;
}

/* The IPv4 address of a sockaddr (AF_INET, or v4-mapped AF_INET6).
 * @return true if it has one. */
static bool sockaddr_ipv4(const struct sockaddr *sa, uint8_t ip[4], uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(ip, &sin->sin_addr, 4);
		*port = ntohs(sin->sin_port);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *b = sin6->sin6_addr.s6_addr;

		if (memcmp(b, v4mapped_prefix, 12) != 0)
			return false;
		memcpy(ip, b + 12, 4);
		*port = ntohs(sin6->sin6_port);
		return true;
	}
	return false;
}

int socks5_write_reply(uint8_t *out, size_t cap, uint8_t rep, const struct sockaddr *bnd)
{
	uint8_t ip[4];
	uint16_t port;

	if (bnd == NULL || sockaddr_ipv4(bnd, ip, &port))
		return socks5_write_reply_atyp(out, cap, rep, SOCKS5_ATYP_IPV4, bnd);
	if (bnd->sa_family == AF_INET6)
		return socks5_write_reply_atyp(out, cap, rep, SOCKS5_ATYP_IPV6, bnd);
	return -EAFNOSUPPORT;
}

int socks5_write_reply_atyp(uint8_t *out, size_t cap, uint8_t rep, uint8_t atyp,
			    const struct sockaddr *bnd)
{
	struct socks5_addr a;
	uint8_t ip4[4] = {0};
	uint16_t port = 0;
	bool is_v4 = false;
	int n;

	if (!atyp_known(atyp))
		return -EINVAL;
	if (bnd != NULL) {
		if (bnd->sa_family != AF_INET && bnd->sa_family != AF_INET6)
			return -EAFNOSUPPORT;
		is_v4 = sockaddr_ipv4(bnd, ip4, &port);
		if (!is_v4)
			port = ntohs(((const struct sockaddr_in6 *)bnd)->sin6_port);
	}

	memset(&a, 0, sizeof(a));
	a.atyp = atyp;
	a.port = port;
	switch (atyp) {
	case SOCKS5_ATYP_IPV4:
		/* An IPv6 address has no IPv4 form: zeros, as for no address. */
		memcpy(a.u.ipv4, ip4, 4);
		break;
	case SOCKS5_ATYP_IPV6:
		if (is_v4) {
			memcpy(a.u.ipv6, v4mapped_prefix, 12);
			memcpy(a.u.ipv6 + 12, ip4, 4);
		} else if (bnd != NULL) {
			memcpy(a.u.ipv6, ((const struct sockaddr_in6 *)bnd)->sin6_addr.s6_addr, 16);
		}
		break;
	default:
		if (bnd == NULL || is_v4)
			inet_ntop(AF_INET, ip4, a.u.domain, sizeof(a.u.domain));
		else
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)bnd)->sin6_addr,
				  a.u.domain, sizeof(a.u.domain));
		a.domain_len = (uint8_t)strlen(a.u.domain);
		break;
	}

	if (cap < 3)
		return -ENOBUFS;
	n = addr_encode(out + 3, cap - 3, &a);
	if (n < 0)
		return n;
	out[0] = SOCKS5_VERSION;
	out[1] = rep;
	out[2] = 0;
	return 3 + n;
}

int socks5_write_greeting(uint8_t *out, bool offer_none, bool offer_password)
{
	size_t n = 2;

	if (!offer_none && !offer_password)
		return -EINVAL;
	out[0] = SOCKS5_VERSION;
	if (offer_none)
		out[n++] = SOCKS5_METHOD_NONE;
	if (offer_password)
		out[n++] = SOCKS5_METHOD_PASSWORD;
	out[1] = (uint8_t)(n - 2);
	return (int)n;
}

int socks5_write_auth(uint8_t *out, size_t cap, const char *user, size_t ulen, const char *pass,
		      size_t plen)
{
	size_t n = 3 + ulen + plen;

	if (user == NULL || ulen == 0 || ulen > 255 || plen > 255 || (plen > 0 && pass == NULL))
		return -EINVAL;
	if (memchr(user, 0, ulen) != NULL)
		return -EINVAL;
	if (cap < n)
		return -ENOBUFS;
	out[0] = SOCKS5_AUTH_VERSION;
	out[1] = (uint8_t)ulen;
	memcpy(out + 2, user, ulen);
	out[2 + ulen] = (uint8_t)plen;
	if (plen > 0)
		memcpy(out + 3 + ulen, pass, plen);
	return (int)n;
}

int socks5_write_request(uint8_t *out, size_t cap, uint8_t cmd, const struct socks5_addr *dst)
{
	int n;

	if (dst == NULL)
		return -EINVAL;
	if (cap < 3)
		return -ENOBUFS;
	n = addr_encode(out + 3, cap - 3, dst);
	if (n < 0)
		return n;
	out[0] = SOCKS5_VERSION;
	out[1] = cmd;
	out[2] = 0;
	return 3 + n;
}

int socks5_parse_method_reply(const uint8_t *buf, size_t len, size_t *consumed,
			      struct socks5_method_reply *out)
{
	clear_err(&out->err);
	if (len < 1)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_VERSION)
		return fail(&out->err, SOCKS5_FAULT_VERSION, false, 0);
	if (len < 2)
		return SOCKS5_NEED_MORE;
	out->method = buf[1];
	*consumed = 2;
	return SOCKS5_OK;
}

int socks5_parse_auth_reply(const uint8_t *buf, size_t len, size_t *consumed,
			    struct socks5_auth_reply *out)
{
	clear_err(&out->err);
	if (len < 1)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_AUTH_VERSION && buf[0] != SOCKS5_VERSION)
		return fail(&out->err, SOCKS5_FAULT_VERSION, false, 0);
	if (len < 2)
		return SOCKS5_NEED_MORE;
	out->status = buf[1];
	*consumed = 2;
	return SOCKS5_OK;
}

int socks5_parse_reply(const uint8_t *buf, size_t len, size_t *consumed, struct socks5_reply *out)
{
	size_t alen;
	enum socks5_fault fault;

	clear_err(&out->err);
	out->rep = 0;
	memset(&out->bnd, 0, sizeof(out->bnd));
	if (len < 1)
		return SOCKS5_NEED_MORE;
	if (buf[0] != SOCKS5_VERSION)
		return fail(&out->err, SOCKS5_FAULT_VERSION, false, 0);
	if (len < 4)
		return SOCKS5_NEED_MORE;
	if (!atyp_known(buf[3]))
		return fail(&out->err, SOCKS5_FAULT_ATYP, false, 0);
	alen = addr_wire_len(buf + 3, len - 3);
	if (alen == 0)
		return SOCKS5_NEED_MORE;
	if (buf[3] == SOCKS5_ATYP_DOMAIN && buf[4] == 0)
		return fail(&out->err, SOCKS5_FAULT_DOMAIN_LEN, false, 0);
	if (len < 3 + alen)
		return SOCKS5_NEED_MORE;
	fault = addr_decode(buf + 3, &out->bnd);
	if (fault != SOCKS5_FAULT_NONE)
		return fail(&out->err, fault, false, 0);
	out->rep = buf[1];
	*consumed = 3 + alen;
	return SOCKS5_OK;
}

int socks5_addr_from_sockaddr(struct socks5_addr *out, const struct sockaddr *sa)
{
	if (out == NULL || sa == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		out->atyp = SOCKS5_ATYP_IPV4;
		memcpy(out->u.ipv4, &sin->sin_addr, 4);
		out->port = ntohs(sin->sin_port);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		out->atyp = SOCKS5_ATYP_IPV6;
		memcpy(out->u.ipv6, sin6->sin6_addr.s6_addr, 16);
		out->port = ntohs(sin6->sin6_port);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int socks5_addr_to_sockaddr(const struct socks5_addr *a, struct sockaddr_storage *ss,
			    socklen_t *salen)
{
	if (a == NULL || ss == NULL || salen == NULL)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (a->atyp == SOCKS5_ATYP_IPV4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a->u.ipv4, 4);
		sin->sin_port = htons(a->port);
		*salen = sizeof(*sin);
		return 0;
	}
	if (a->atyp == SOCKS5_ATYP_IPV6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(sin6->sin6_addr.s6_addr, a->u.ipv6, 16);
		sin6->sin6_port = htons(a->port);
		*salen = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

const char *socks5_addr_str(const struct socks5_addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (len == 0)
		return buf;
	switch (a->atyp) {
	case SOCKS5_ATYP_IPV4:
		inet_ntop(AF_INET, a->u.ipv4, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, (unsigned)a->port);
		break;
	case SOCKS5_ATYP_IPV6:
		inet_ntop(AF_INET6, a->u.ipv6, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, (unsigned)a->port);
		break;
	case SOCKS5_ATYP_DOMAIN:
		snprintf(buf, len, "%.*s:%u", (int)a->domain_len, a->u.domain, (unsigned)a->port);
		break;
	default:
		snprintf(buf, len, "?(atyp %u)", (unsigned)a->atyp);
		break;
	}
	return buf;
}

const char *socks5_rep_str(uint8_t rep)
{
	switch (rep) {
	case SOCKS5_REP_SUCCEEDED:
		return "succeeded";
	case SOCKS5_REP_GENERAL_FAILURE:
		return "general SOCKS server failure";
	case SOCKS5_REP_NOT_ALLOWED:
		return "connection not allowed by ruleset";
	case SOCKS5_REP_NET_UNREACHABLE:
		return "network unreachable";
	case SOCKS5_REP_HOST_UNREACHABLE:
		return "host unreachable";
	case SOCKS5_REP_CONN_REFUSED:
		return "connection refused";
	case SOCKS5_REP_TTL_EXPIRED:
		return "TTL expired";
	case SOCKS5_REP_CMD_NOT_SUPPORTED:
		return "command not supported";
	case SOCKS5_REP_ATYP_NOT_SUPPORTED:
		return "address type not supported";
	default:
		return "unassigned reply code";
	}
}

const char *socks5_fault_str(enum socks5_fault fault)
{
	switch (fault) {
	case SOCKS5_FAULT_NONE:
		return "no fault";
	case SOCKS5_FAULT_VERSION:
		return "bad protocol version";
	case SOCKS5_FAULT_NMETHODS:
		return "greeting offers no method";
	case SOCKS5_FAULT_ULEN:
		return "empty username";
	case SOCKS5_FAULT_USER_NUL:
		return "NUL byte in username";
	case SOCKS5_FAULT_COMMAND:
		return "unsupported command";
	case SOCKS5_FAULT_ATYP:
		return "unsupported address type";
	case SOCKS5_FAULT_DOMAIN_LEN:
		return "empty domain name";
	case SOCKS5_FAULT_DOMAIN_NUL:
		return "NUL byte in domain name";
	}
	return "unknown fault";
}
