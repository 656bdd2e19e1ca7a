/* Value parsers of conf/: durations, thresholds, integers, addresses, CIDRs.
 * They work on spans so the loader can parse list items in place; the public
 * conf_parse_* wrappers take NUL-terminated text and report only -EINVAL. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

bool conf__is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

struct conf__span conf__span_of(const char *text)
{
	struct conf__span s = {text, text ? strlen(text) : 0};
	return s;
}

struct conf__span conf__trim(struct conf__span s)
{
	while (s.len && conf__is_blank(s.p[0])) {
		s.p++;
		s.len--;
	}
	while (s.len && conf__is_blank(s.p[s.len - 1]))
		s.len--;
	return s;
}

bool conf__span_eq(struct conf__span s, const char *word)
{
	size_t n = strlen(word);
	return s.len == n && strncasecmp(s.p, word, n) == 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Digits, optionally grouped with `,` or `_` (never first, last or doubled). */
int conf__parse_uint(struct conf__span s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	bool range = false;

	s = conf__trim(s);
	if (!s.len || !is_digit(s.p[0]) || !is_digit(s.p[s.len - 1]))
		return -EINVAL;
	for (size_t i = 0; i < s.len; i++) {
		char c = s.p[i];
		if (c == ',' || c == '_') {
			if (!is_digit(s.p[i + 1]))
				return -EINVAL;
			continue;
		}
		if (!is_digit(c))
			return -EINVAL;
		unsigned d = (unsigned)(c - '0');
		if (v > (UINT64_MAX - d) / 10)
			range = true;
		else
			v = v * 10 + d;
	}
	if (range || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

static const struct {
	const char *name;
	uint64_t ms;
} units[] = {
    {"ms", 1},		{"msec", 1},	   {"msecs", 1},       {"s", 1000},	{"sec", 1000},
    {"secs", 1000},	{"second", 1000},  {"seconds", 1000},  {"m", 60000},	{"min", 60000},
    {"mins", 60000},	{"minute", 60000}, {"minutes", 60000}, {"h", 3600000},	{"hr", 3600000},
    {"hrs", 3600000},	{"hour", 3600000}, {"hours", 3600000}, {"d", 86400000}, {"day", 86400000},
    {"days", 86400000},
};

static int unit_ms(struct conf__span s, uint64_t *ms)
{
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (conf__span_eq(s, units[i].name)) {
			*ms = units[i].ms;
			return 0;
		}
	}
	return -EINVAL;
}

int conf__parse_duration(struct conf__span s, uint64_t *ms)
{
	size_t i = 0;
	uint64_t n, unit;
	int rc;

	s = conf__trim(s);
	while (i < s.len && (is_digit(s.p[i]) || s.p[i] == ',' || s.p[i] == '_'))
		i++;
	struct conf__span num = {s.p, i};
	struct conf__span rest = conf__trim((struct conf__span){s.p + i, s.len - i});
	if (!num.len)
		return -EINVAL;
	rc = conf__parse_uint(num, UINT64_MAX, &n);
	if (rc)
		return rc;
	if (!rest.len) {
		if (n != 0)
			return -EINVAL; /* a bare number has no unit: only 0 is clear */
		*ms = 0;
		return 0;
	}
	if (unit_ms(rest, &unit))
		return -EINVAL;
	if (n > UINT64_MAX / unit)
		return -ERANGE;
	*ms = n * unit;
	return 0;
}

int conf__parse_rate(struct conf__span s, struct conf_threshold *out)
{
	uint64_t count, period;
	int rc;

	s = conf__trim(s);
	const char *slash = memchr(s.p, '/', s.len);
	if (!slash)
		return -EINVAL;
	struct conf__span left = conf__trim((struct conf__span){s.p, (size_t)(slash - s.p)});
	struct conf__span right =
	    conf__trim((struct conf__span){slash + 1, s.len - (size_t)(slash - s.p) - 1});
	rc = conf__parse_uint(left, UINT32_MAX, &count);
	if (rc)
		return rc;
	if (count == 0)
		return -ERANGE;
	if (right.len && !is_digit(right.p[0]))
		rc = unit_ms(right, &period); /* `10/s` = per one second */
	else
		rc = conf__parse_duration(right, &period);
	if (rc)
		return rc;
	if (period == 0)
		return -ERANGE;
	out->count = (uint32_t)count;
	out->period_ms = period;
	return 0;
}

int conf__parse_threshold(struct conf__span s, struct conf_threshold *out)
{
	if (conf__span_eq(conf__trim(s), "immediate")) {
		out->count = 0;
		out->period_ms = 0;
		return 0;
	}
	return conf__parse_rate(s, out);
}

/* inet_pton wants a C string: copy the span to a small buffer first. */
static int pton(struct conf__span s, int *family, uint8_t addr[16])
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (!s.len || s.len >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	if (memchr(buf, ':', s.len)) {
		if (inet_pton(AF_INET6, buf, addr) != 1)
			return -EINVAL;
		*family = AF_INET6;
		return 0;
	}
	/* inet_pton(AF_INET) takes only the strict dotted quad, as we want. */
	if (inet_pton(AF_INET, buf, addr) != 1)
		return -EINVAL;
	*family = AF_INET;
	return 0;
}

static void fill_sockaddr(struct sockaddr_storage *out, int family, const uint8_t *addr,
			  uint16_t port)
{
	memset(out, 0, sizeof(*out));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, addr, 16);
	}
}

static int parse_port(struct conf__span s, uint16_t *port)
{
	uint32_t v = 0;

	if (!s.len || s.len > 5)
		return -EINVAL;
	for (size_t i = 0; i < s.len; i++) {
		if (!is_digit(s.p[i]))
			return -EINVAL;
		v = v * 10 + (uint32_t)(s.p[i] - '0');
	}
	if (v > 65535)
		return -ERANGE;
	*port = (uint16_t)v;
	return 0;
}

int conf__parse_addr_port(struct conf__span s, bool need_port, struct sockaddr_storage *out)
{
	struct conf__span host, port = {NULL, 0};
	bool has_port = false;
	uint8_t addr[16];
	uint16_t portnum = 0;
	int family, rc;

	s = conf__trim(s);
	if (!s.len)
		return -EINVAL;
	if (s.p[0] == '[') {
		const char *close = memchr(s.p, ']', s.len);
		if (!close)
			return -EINVAL;
		host = (struct conf__span){s.p + 1, (size_t)(close - s.p) - 1};
		size_t rest = s.len - (size_t)(close - s.p) - 1;
		if (rest) {
			if (close[1] != ':')
				return -EINVAL;
			port = (struct conf__span){close + 2, rest - 1};
			has_port = true;
		}
		if (!memchr(host.p, ':', host.len))
			return -EINVAL; /* brackets are for IPv6 only */
	} else {
		const char *colon = memchr(s.p, ':', s.len);
		if (colon && memchr(colon + 1, ':', s.len - (size_t)(colon - s.p) - 1)) {
			host = s; /* two colons or more: a bare IPv6 address */
		} else if (colon) {
			host = (struct conf__span){s.p, (size_t)(colon - s.p)};
			port = (struct conf__span){colon + 1, s.len - host.len - 1};
			has_port = true;
		} else {
			host = s;
		}
	}
	if (has_port) {
		rc = parse_port(port, &portnum);
		if (rc)
			return rc;
	} else if (need_port) {
		return -EINVAL;
	}
	if (pton(host, &family, addr))
		return -EINVAL;
	fill_sockaddr(out, family, addr, portnum);
	return 0;
}

int conf__parse_addr(struct conf__span s, struct sockaddr_storage *out)
{
	uint8_t addr[16];
	int family;

	s = conf__trim(s);
	if (s.len >= 2 && s.p[0] == '[' && s.p[s.len - 1] == ']') {
		s = (struct conf__span){s.p + 1, s.len - 2};
		if (!memchr(s.p, ':', s.len))
			return -EINVAL; /* brackets are for IPv6 only */
	}
	if (pton(s, &family, addr))
		return -EINVAL;
	fill_sockaddr(out, family, addr, 0);
	return 0;
}

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void mask_bits(uint8_t *addr, unsigned bytes, unsigned prefix_len)
{
	for (unsigned i = 0; i < bytes; i++) {
		unsigned keep = prefix_len > i * 8 ? prefix_len - i * 8 : 0;
		if (keep < 8)
			addr[i] &= (uint8_t)(0xff00u >> keep);
	}
}

int conf__parse_cidr(struct conf__span s, struct conf_cidr *out)
{
	struct conf_cidr net;
	uint64_t len;
	int rc;

	s = conf__trim(s);
	memset(&net, 0, sizeof(net));
	const char *slash = memchr(s.p, '/', s.len);
	struct conf__span host = {s.p, slash ? (size_t)(slash - s.p) : s.len};
	if (pton(conf__trim(host), &net.family, net.addr))
		return -EINVAL;
	unsigned max = net.family == AF_INET ? 32 : 128;
	if (slash) {
		struct conf__span bits =
		    conf__trim((struct conf__span){slash + 1, s.len - host.len - 1});
		for (size_t i = 0; i < bits.len; i++)
			if (!is_digit(bits.p[i]))
				return -EINVAL;
		rc = conf__parse_uint(bits, max, &len);
		if (rc)
			return rc;
		net.prefix_len = (uint8_t)len;
	} else {
		net.prefix_len = (uint8_t)max;
	}
	/* Peers in ::ffff:0:0/96 are matched as IPv4, so store such networks as IPv4. */
	if (net.family == AF_INET6 && net.prefix_len >= 96 &&
	    memcmp(net.addr, v4mapped_prefix, 12) == 0) {
		memmove(net.addr, net.addr + 12, 4);
		memset(net.addr + 4, 0, 12);
		net.family = AF_INET;
		net.prefix_len = (uint8_t)(net.prefix_len - 96);
	}
	mask_bits(net.addr, net.family == AF_INET ? 4 : 16, net.prefix_len);
	*out = net;
	return 0;
}

int conf__cidr_list_append(struct conf_cidr_list *list, struct conf__span s,
			   struct conf__span *bad_item)
{
	size_t n = 0, start = 0;
	int rc;

	s = conf__trim(s);
	if (bad_item)
		*bad_item = s;
	if (!s.len)
		return -EINVAL;
	for (size_t i = 0; i <= s.len; i++)
		if (i == s.len || s.p[i] == ',' || s.p[i] == ';')
			n++;
	struct conf_cidr *items = realloc(list->items, (list->count + n) * sizeof(*items));
	if (!items)
		return -ENOMEM;
	list->items = items;
	size_t count = list->count;
	for (size_t i = 0; i <= s.len; i++) {
		if (i < s.len && s.p[i] != ',' && s.p[i] != ';')
			continue;
		struct conf__span item = conf__trim((struct conf__span){s.p + start, i - start});
		start = i + 1;
		rc = item.len ? conf__parse_cidr(item, &items[count]) : -EINVAL;
		if (rc) {
			if (bad_item)
				*bad_item = item;
			return rc;
		} /* list->count unchanged: the new items are not kept */
		count++;
	}
	list->count = count;
	return 0;
}

/* Address bytes of a sockaddr, with v4-mapped IPv6 seen as IPv4. */
static int addr_bytes(const struct sockaddr *sa, const uint8_t **bytes)
{
	if (sa->sa_family == AF_INET) {
		*bytes = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (memcmp(b, v4mapped_prefix, 12) == 0) {
			*bytes = b + 12;
			return AF_INET;
		}
		*bytes = b;
		return AF_INET6;
	}
	return -1;
}

bool conf__cidr_contains(const struct conf_cidr *net, const struct sockaddr *addr)
{
	const uint8_t *b = NULL;

	if (addr_bytes(addr, &b) != net->family)
		return false;
	unsigned full = net->prefix_len / 8, rest = net->prefix_len % 8;
	if (memcmp(b, net->addr, full) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff00u >> rest);
		if ((b[full] & mask) != net->addr[full])
			return false;
	}
	return true;
}

bool conf__addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
	}
	return false;
}

uint16_t conf__addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

bool conf__addr_is_any(const struct sockaddr_storage *ss)
{
	static const uint8_t zero[16];

	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == 0;
	if (ss->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, zero, 16) == 0;
	return false;
}

/* Same family and address; ports are not compared. */
bool conf__addr_same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
	return false;
}

const char *conf__duration_str(uint64_t ms, char *buf, size_t len)
{
	static const struct {
		const char *name;
		uint64_t ms;
	} big[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};

	if (ms == 0) {
		snprintf(buf, len, "0");
		return buf;
	}
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		if (ms % big[i].ms == 0) {
			snprintf(buf, len, "%llu%s", (unsigned long long)(ms / big[i].ms),
				 big[i].name);
			return buf;
		}
	}
	snprintf(buf, len, "%llums", (unsigned long long)ms);
	return buf;
}

const char *conf__threshold_str(const struct conf_threshold *t, char *buf, size_t len)
{
	char d[32];

	if (t->count == 0)
		snprintf(buf, len, "immediate");
	else
		snprintf(buf, len, "%u/%s", (unsigned)t->count,
			 conf__duration_str(t->period_ms, d, sizeof(d)));
	return buf;
}

const char *conf__cidr_str(const struct conf_cidr *net, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(net->family, net->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	snprintf(buf, len, "%s/%u", a, (unsigned)net->prefix_len);
	return buf;
}

/* Public wrappers: the contract reports every failure as -EINVAL. */

static int public_rc(int rc)
{
	return rc ? -EINVAL : 0;
}

int conf_parse_duration(const char *text, uint64_t *ms)
{
	uint64_t v;

	if (!text || !ms || conf__parse_duration(conf__span_of(text), &v))
		return -EINVAL;
	*ms = v;
	return 0;
}

int conf_parse_threshold(const char *text, struct conf_threshold *out)
{
	struct conf_threshold t;

	if (!text || !out || conf__parse_threshold(conf__span_of(text), &t))
		return -EINVAL;
	*out = t;
	return 0;
}

int conf_parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	if (!text || !out)
		return -EINVAL;
	struct conf__span s = conf__trim(conf__span_of(text));
	for (size_t i = 0; i < 4; i++) {
		if (conf__span_eq(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (conf__span_eq(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

int conf_parse_uint(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (!text || !out || conf__parse_uint(conf__span_of(text), max, &v))
		return -EINVAL;
	*out = v;
	return 0;
}

int conf_parse_addr_port(const char *text, bool need_port, struct sockaddr_storage *out)
{
	if (!text || !out)
		return -EINVAL;
	return public_rc(conf__parse_addr_port(conf__span_of(text), need_port, out));
}

int conf_parse_addr(const char *text, struct sockaddr_storage *out)
{
	if (!text || !out)
		return -EINVAL;
	return public_rc(conf__parse_addr(conf__span_of(text), out));
}

int conf_parse_cidr(const char *text, struct conf_cidr *out)
{
	if (!text || !out)
		return -EINVAL;
	return public_rc(conf__parse_cidr(conf__span_of(text), out));
}

int conf_parse_cidr_list(const char *text, struct conf_cidr_list *out)
{
	struct conf_cidr_list list = {NULL, 0};
	int rc;

	if (!text || !out)
		return -EINVAL;
	rc = conf__cidr_list_append(&list, conf__span_of(text), NULL);
	if (rc) {
		free(list.items);
		return rc == -ENOMEM ? -ENOMEM : -EINVAL;
	}
	*out = list;
	return 0;
}

bool conf_cidr_list_match(const struct conf_cidr_list *list, const struct sockaddr *addr)
{
	if (!list || !addr)
		return false;
	for (size_t i = 0; i < list->count; i++)
		if (conf__cidr_contains(&list->items[i], addr))
			return true;
	return false;
}

int conf_addr_key(const struct sockaddr *addr, uint8_t key[16])
{
	memset(key, 0, 16);
	if (addr && addr->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		return 0;
	}
	if (addr && addr->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
		return 0;
	}
	return -EINVAL;
}

const char *conf_addr_str(const struct sockaddr *addr, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];
	unsigned port;

	if (!buf || !len)
		return NULL;
	if (!addr) {
		snprintf(buf, len, "?");
		return buf;
	}
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)addr;
		inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
		port = ntohs(sin->sin_port);
		if (port)
			snprintf(buf, len, "%s:%u", a, port);
		else
			snprintf(buf, len, "%s", a);
	} else if (addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)addr;
		inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
		port = ntohs(sin6->sin6_port);
		if (port)
			snprintf(buf, len, "[%s]:%u", a, port);
		else
			snprintf(buf, len, "%s", a);
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}
