/* logtext: what goes inside a log line. Escaping and quoting of values a
 * client controls, the last-line-of-defence sanitiser, and the key=value
 * scan for journald fields. Pure: no I/O, no clock. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "log.h"

static const char hex[] = "0123456789abcdef";

/* Length of the well-formed UTF-8 sequence at s[0] (2..4 bytes), or 0 when
 * there is none: a stray continuation byte, an overlong form, a surrogate,
 * a code point past U+10FFFF, or a sequence cut short. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* past U+10FFFF */
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

static size_t put_hex(char *out, unsigned char c)
{
	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[c >> 4];
	out[3] = hex[c & 15];
	return 4;
}

/* Render the character at s[0] into out (at most 8 bytes).
 * `value` selects the log_quote() rules (backslash and quote escaped too).
 * @return bytes written; *used = bytes of s consumed, *esc = escaped. */
static size_t render(const unsigned char *s, size_t n, bool value, char *out, size_t *used,
		     bool *esc)
{
	unsigned char c = s[0];
	size_t u;

	*used = 1;
	*esc = true;
	if (c < 0x80) {
		if (value) {
			switch (c) {
			case '\n':
				memcpy(out, "\\n", 2);
				return 2;
			case '\r':
				memcpy(out, "\\r", 2);
				return 2;
			case '\t':
				memcpy(out, "\\t", 2);
				return 2;
			case '\\':
				memcpy(out, "\\\\", 2);
				return 2;
			case '"':
				memcpy(out, "\\\"", 2);
				return 2;
			default:
				break;
			}
		}
		if (c < 0x20 || c == 0x7f)
			return put_hex(out, c);
		*esc = false;
		out[0] = (char)c;
		return 1;
	}
	u = utf8_len(s, n);
	if (u == 0)
		return put_hex(out, c);
	/* C1 controls (U+0080..U+009F) act on some terminals: escape both bytes. */
	if (u == 2 && c == 0xc2 && s[1] < 0xa0) {
		*used = 2;
		put_hex(out, c);
		put_hex(out + 4, s[1]);
		return 8;
	}
	*esc = false;
	*used = u;
	memcpy(out, s, u);
	return u;
}

static bool needs_quotes(unsigned char c)
{
	return c == ' ' || c == '"' || c == '=';
}

char *log_quote(char *buf, size_t len, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	char tmp[8];
	size_t total = 0, pos = 0, used, w, budget;
	bool quote, esc, any_esc = false, cut;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if (len < 8)
		return buf;
	if (!s) {
		memcpy(buf, "-", 2);
		return buf;
	}
	quote = n == 0 || (n == 1 && s[0] == '-');
	for (size_t i = 0; i < n; i += used) {
		total += render(s + i, n - i, true, tmp, &used, &esc);
		any_esc |= esc;
		quote |= needs_quotes(s[i]);
	}
	quote |= any_esc;
	cut = total + (quote ? 2 : 0) + 1 > len;
	if (cut)
		quote = true;
	/* Room for the text: the NUL, the quotes, and `...` when cut. */
	budget = len - 1 - (quote ? 2 : 0) - (cut ? 3 : 0);
	if (quote)
		buf[pos++] = '"';
	for (size_t i = 0, done = 0; i < n; i += used) {
		w = render(s + i, n - i, true, tmp, &used, &esc);
		if (done + w > budget)
			break;
		memcpy(buf + pos, tmp, w);
		pos += w;
		done += w;
	}
	if (cut) {
		memcpy(buf + pos, "...", 3);
		pos += 3;
	}
	if (quote)
		buf[pos++] = '"';
	buf[pos] = '\0';
	return buf;
}

char *log_quote_str(char *buf, size_t len, const char *s)
{
	return log_quote(buf, len, s, s ? strlen(s) : 0);
}

size_t log_sanitize(char *out, size_t outlen, const char *in, size_t n)
{
	const unsigned char *s = (const unsigned char *)in;
	char tmp[8];
	size_t pos = 0, total = 0, used, w, budget;
	bool esc, cut;

	if (outlen < 8) {
		if (outlen)
			out[0] = '\0';
		return 0;
	}
	for (size_t i = 0; i < n; i += used)
		total += render(s + i, n - i, false, tmp, &used, &esc);
	cut = total > outlen - 1;
	budget = outlen - 1 - (cut ? 3 : 0);
	for (size_t i = 0; i < n; i += used) {
		w = render(s + i, n - i, false, tmp, &used, &esc);
		if (pos + w > budget)
			break;
		memcpy(out + pos, tmp, w);
		pos += w;
	}
	if (cut) {
		memcpy(out + pos, "...", 3);
		pos += 3;
	}
	out[pos] = '\0';
	return pos;
}

size_t log_journal_fields(const char *msg, struct log_field *out, size_t max)
{
	static const struct {
		const char *key, *field;
	} map[] = {
	    {"client", "CLIENT"}, {"source", "SOURCE"}, {"pool", "POOL"},
	    {"user", "USER"},	  {"dest", "DEST"},	{"id", "SESSION_ID"},
	};
	bool seen[sizeof map / sizeof map[0]] = {false};
	size_t count = 0;
	const char *p = msg;

	while (p && *p && count < max) {
		const char *key = p, *eq, *v, *end;
		size_t klen;

		/* A key starts the message or follows a blank. */
		while (*p && *p != ' ' && *p != '=')
			p++;
		if (*p != '=') {
			while (*p == ' ')
				p++;
			continue;
		}
		eq = p;
		klen = (size_t)(eq - key);
		v = eq + 1;
		if (*v == '"') {
			/* Quoted: up to the next unescaped quote. */
			end = ++v;
			while (*end && *end != '"')
				end += end[0] == '\\' && end[1] ? 2 : 1;
			p = *end ? end + 1 : end;
		} else {
			end = v;
			while (*end && *end != ' ')
				end++;
			p = end;
		}
		for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
			if (seen[i] || strlen(map[i].key) != klen ||
			    memcmp(map[i].key, key, klen) != 0)
				continue;
			seen[i] = true;
			out[count].name = map[i].field;
			out[count].value = v;
			out[count].len = (size_t)(end - v);
			count++;
			break;
		}
		while (*p == ' ')
			p++;
	}
	return count;
}
