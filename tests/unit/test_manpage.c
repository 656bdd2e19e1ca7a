/* docs/sockpool.ini.5 against the parser: every key conf/ accepts is a
 * `.TP` tag in its section's `.SS "[kind ...]"` part (for [defaults], named
 * in bold there), every such tag is a key the parser accepts, and each entry
 * shows an example. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#ifndef MANPAGE_INI
#error "MANPAGE_INI must name docs/sockpool.ini.5 (set by tests/unit/meson.build)"
#endif

static const char *const kinds[] = {"server", "defaults", "source", "pool", "user"};
#define N_KINDS	  (sizeof kinds / sizeof kinds[0])
#define MAX_NAMES 256

/* What a page says, per section kind: tagged keys, bold words, entries
 * lacking an example. */
struct page {
	char *tags[N_KINDS][MAX_NAMES];
	size_t n_tags[N_KINDS];
	char *bold[N_KINDS][MAX_NAMES];
	size_t n_bold[N_KINDS];
	char *no_example[MAX_NAMES];
	size_t n_no_example;
};

/* strdup through cmocka's allocator, so a leak fails the test. */
static char *dup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = test_malloc(n);

	memcpy(p, s, n);
	return p;
}

static int kind_index(const char *word, size_t len)
{
	for (size_t i = 0; i < N_KINDS; i++)
		if (strlen(kinds[i]) == len && !strncmp(kinds[i], word, len))
			return (int)i;
	return -1;
}

/* The first argument of a macro line with roff escapes `\&` and `\-` undone. */
static char *first_arg(const char *p)
{
	char buf[128];
	size_t n = 0;
	bool quoted;

	while (*p == ' ')
		p++;
	quoted = *p == '"';
	if (quoted)
		p++;
	while (*p && n + 1 < sizeof buf) {
		if (quoted ? *p == '"' : *p == ' ')
			break;
		if (p[0] == '\\' && p[1] == '&') {
			p += 2;
			continue;
		}
		if (p[0] == '\\' && p[1] == '-') {
			buf[n++] = '-';
			p += 2;
			continue;
		}
		buf[n++] = *p++;
	}
	buf[n] = '\0';
	return dup(buf);
}

static void add(char **list, size_t *n, char *name)
{
	assert_true(*n < MAX_NAMES);
	list[(*n)++] = name;
}

static bool has(char *const *list, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], name))
			return true;
	return false;
}

static void page_read(const char *text, struct page *pg)
{
	int kind = -1;
	bool after_tp = false, in_entry = false, entry_example = false;
	char *entry = NULL;

	memset(pg, 0, sizeof *pg);
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *l = test_malloc(len + 1);
		bool ends_entry;

		memcpy(l, line, len);
		l[len] = '\0';
		line = end ? end + 1 : NULL;

		ends_entry =
		    !strncmp(l, ".TP", 3) || !strncmp(l, ".SS", 3) || !strncmp(l, ".SH", 3);
		if (ends_entry && in_entry) {
			if (!entry_example)
				add(pg->no_example, &pg->n_no_example, entry);
			else
				test_free(entry);
			in_entry = false;
			entry = NULL;
		}
		if (!strncmp(l, ".SS", 3) || !strncmp(l, ".SH", 3)) {
			/* `.SS "[source \(dqNAME\(dq]"`: the kind is the word after `[`. */
			const char *b = strchr(l, '[');
			kind = -1;
			if (!strncmp(l, ".SS", 3) && b)
				kind = kind_index(b + 1, strcspn(b + 1, " ]\\\""));
			after_tp = false;
		} else if (!strncmp(l, ".TP", 3) || !strncmp(l, ".TQ", 3)) {
			after_tp = true;
		} else if (kind >= 0 && (!strncmp(l, ".B ", 3) || !strncmp(l, ".BR ", 4) ||
					 !strncmp(l, ".BI ", 4))) {
			char *name = first_arg(strchr(l, ' '));
			if (after_tp) {
				add(pg->tags[kind], &pg->n_tags[kind], name);
				in_entry = true;
				entry_example = false;
				entry = dup(pg->tags[kind][pg->n_tags[kind] - 1]);
			} else {
				add(pg->bold[kind], &pg->n_bold[kind], name);
			}
			after_tp = false;
		} else {
			after_tp = false;
		}
		if (in_entry && strstr(l, "Example"))
			entry_example = true;
		test_free(l);
	}
	if (in_entry) {
		if (!entry_example)
			add(pg->no_example, &pg->n_no_example, entry);
		else
			test_free(entry);
	}
}

static void page_free(struct page *pg)
{
	for (size_t k = 0; k < N_KINDS; k++) {
		for (size_t i = 0; i < pg->n_tags[k]; i++)
			test_free(pg->tags[k][i]);
		for (size_t i = 0; i < pg->n_bold[k]; i++)
			test_free(pg->bold[k][i]);
	}
	for (size_t i = 0; i < pg->n_no_example; i++)
		test_free(pg->no_example[i]);
}

/* Keys the parser accepts that the page does not document, space-separated
 * as `kind.key` into out. @return how many. */
static size_t missing_keys(const struct page *pg, char *out, size_t outlen)
{
	size_t missing = 0;

	out[0] = '\0';
	for (size_t k = 0; k < N_KINDS; k++) {
		const char *key;
		for (size_t i = 0; (key = conf_key_name(kinds[k], i)) != NULL; i++) {
			bool ok = !strcmp(kinds[k], "defaults")
				      ? has(pg->bold[k], pg->n_bold[k], key) ||
					    has(pg->tags[k], pg->n_tags[k], key)
				      : has(pg->tags[k], pg->n_tags[k], key);
			if (!ok) {
				missing++;
				snprintf(out + strlen(out), outlen - strlen(out), " %s.%s",
					 kinds[k], key);
			}
		}
	}
	return missing;
}

static bool parser_accepts(const char *kind, const char *name)
{
	const char *key;

	for (size_t i = 0; (key = conf_key_name(kind, i)) != NULL; i++)
		if (!strcmp(key, name))
			return true;
	return false;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	if (!f)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = test_malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_manpage_documents_every_key_the_parser_accepts(void **state)
{
	struct page *pg = test_malloc(sizeof *pg);
	char *text = slurp(MANPAGE_INI);
	char report[4096];
	size_t missing;

	page_read(text, pg);
	missing = missing_keys(pg, report, sizeof report);
	if (missing)
		fail_msg("%zu keys missing from %s:%s", missing, MANPAGE_INI, report);
	page_free(pg);
	test_free(pg);
	test_free(text);
}

static void test_manpage_tags_only_keys_the_parser_accepts(void **state)
{
	struct page *pg = test_malloc(sizeof *pg);
	char *text = slurp(MANPAGE_INI);
	size_t total = 0;

	page_read(text, pg);
	for (size_t k = 0; k < N_KINDS; k++) {
		for (size_t i = 0; i < pg->n_tags[k]; i++) {
			if (!parser_accepts(kinds[k], pg->tags[k][i]))
				fail_msg("[%s] %s is documented but not accepted by the parser",
					 kinds[k], pg->tags[k][i]);
			total++;
		}
	}
	/* The page has real sections: a parse that finds none would pass above. */
	assert_true(total >= 40);
	page_free(pg);
	test_free(pg);
	test_free(text);
}

static void test_manpage_every_entry_has_an_example(void **state)
{
	struct page *pg = test_malloc(sizeof *pg);
	char *text = slurp(MANPAGE_INI);

	page_read(text, pg);
	if (pg->n_no_example)
		fail_msg("%zu entries without an example, the first: %s", pg->n_no_example,
			 pg->no_example[0]);
	page_free(pg);
	test_free(pg);
	test_free(text);
}

/* The checker itself: a page missing keys is caught, a full one is not. */
static void test_manpage_checker_catches_a_missing_key(void **state)
{
	static const char partial[] = ".TH X 5\n"
				      ".SS \"[server]\"\n"
				      ".TP\n"
				      ".B listen\n"
				      "Example: x\n"
				      ".SS \"[pool \\(dqNAME\\(dq]\"\n"
				      ".TP\n"
				      ".B strategy\n"
				      "no example here\n"
				      ".SH SEE ALSO\n";
	struct page *pg = test_malloc(sizeof *pg);
	char report[4096];

	page_read(partial, pg);
	assert_int_equal(pg->n_tags[0], 1);
	assert_string_equal(pg->tags[0][0], "listen");
	assert_int_equal(pg->n_tags[3], 1);
	assert_true(missing_keys(pg, report, sizeof report) > 0);
	assert_non_null(strstr(report, " server.admin_listen"));
	assert_null(strstr(report, " server.listen "));
	assert_non_null(strstr(report, " pool.hash_key"));
	assert_non_null(strstr(report, " user.password_hash"));
	assert_int_equal(pg->n_no_example, 1);
	assert_string_equal(pg->no_example[0], "strategy");
	page_free(pg);
	test_free(pg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manpage_documents_every_key_the_parser_accepts),
	    cmocka_unit_test(test_manpage_tags_only_keys_the_parser_accepts),
	    cmocka_unit_test(test_manpage_every_entry_has_an_example),
	    cmocka_unit_test(test_manpage_checker_catches_a_missing_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
