/* Unit tests for proxy/addrwatch: netlink address messages in, presence and
 * change reports out; tentative and dadfailed copies, several interfaces,
 * the first dump, and a resync after lost events. No socket: messages are
 * built here and fed with addrwatch_feed(). */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "addrwatch.h"

#ifndef IFA_F_OPTIMISTIC
#define IFA_F_OPTIMISTIC 0x04
#endif

struct reports {
	unsigned n;
	char addr[16][64];
	bool present[16];
};

static void on_change(const struct sockaddr *sa, bool present, void *ctx)
{
	struct reports *r = ctx;
	const void *a = sa->sa_family == AF_INET
			    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
			    : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;

	assert_true(r->n < 16);
	assert_non_null(inet_ntop(sa->sa_family, a, r->addr[r->n], sizeof r->addr[r->n]));
	r->present[r->n++] = present;
}

/* A buffer of netlink messages under construction. */
struct nlbuf {
	uint8_t b[4096] __attribute__((aligned(4)));
	size_t len;
};

/* Append one RTM_NEWADDR/RTM_DELADDR for `text` on interface `ifindex`; flags
 * above 0xff go in IFA_FLAGS only, as the kernel does. */
static void put_addr(struct nlbuf *nb, uint16_t type, uint32_t seq, const char *text,
		     uint32_t ifindex, uint32_t flags)
{
	int family = strchr(text, ':') ? AF_INET6 : AF_INET;
	size_t alen = family == AF_INET ? 4 : 16;
	struct nlmsghdr *nh = (struct nlmsghdr *)(nb->b + nb->len);
	struct ifaddrmsg *ifa;
	struct rtattr *rta;

	memset(nh, 0, NLMSG_SPACE(sizeof *ifa) + 2 * RTA_SPACE(16) + RTA_SPACE(4));
	nh->nlmsg_type = type;
	nh->nlmsg_seq = seq;
	nh->nlmsg_len = NLMSG_LENGTH(sizeof *ifa);
	ifa = NLMSG_DATA(nh);
	ifa->ifa_family = (uint8_t)family;
	ifa->ifa_index = ifindex;
	ifa->ifa_flags = (uint8_t)flags;
	ifa->ifa_prefixlen = family == AF_INET ? 32 : 128;
	rta = (struct rtattr *)((uint8_t *)nh + NLMSG_ALIGN(nh->nlmsg_len));
	rta->rta_type = family == AF_INET ? IFA_LOCAL : IFA_ADDRESS;
	rta->rta_len = (unsigned short)RTA_LENGTH(alen);
	assert_int_equal(inet_pton(family, text, RTA_DATA(rta)), 1);
	nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + RTA_SPACE(alen);
	rta = (struct rtattr *)((uint8_t *)nh + nh->nlmsg_len);
	rta->rta_type = IFA_FLAGS;
	rta->rta_len = RTA_LENGTH(4);
	memcpy(RTA_DATA(rta), &flags, 4);
	nh->nlmsg_len += RTA_SPACE(4);
	nb->len += NLMSG_ALIGN(nh->nlmsg_len);
	assert_true(nb->len < sizeof nb->b - 256);
}

static void put_done(struct nlbuf *nb, uint32_t seq)
{
	struct nlmsghdr *nh = (struct nlmsghdr *)(nb->b + nb->len);

	memset(nh, 0, NLMSG_SPACE(4));
	nh->nlmsg_type = NLMSG_DONE;
	nh->nlmsg_seq = seq;
	nh->nlmsg_len = NLMSG_LENGTH(4);
	nb->len += NLMSG_SPACE(4);
}

static void feed(struct addrwatch *w, struct nlbuf *nb)
{
	assert_int_equal(addrwatch_feed(w, nb->b, nb->len), 0);
	nb->len = 0;
}

static int present(const struct addrwatch *w, const char *text)
{
	struct sockaddr_storage ss = {0};

	if (strchr(text, ':')) {
		ss.ss_family = AF_INET6;
		inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr);
	} else {
		ss.ss_family = AF_INET;
		inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr);
	}
	return addrwatch_present(w, (struct sockaddr *)&ss);
}

/* A watch whose first dump held `n` addresses (on interface 1). */
static struct addrwatch *watch_with(struct reports *r, const char *const *addrs, size_t n)
{
	struct addrwatch *w = NULL;
	struct nlbuf nb = {0};
	uint32_t seq;

	assert_int_equal(addrwatch_new(on_change, r, &w), 0);
	assert_int_equal(present(w, "192.0.2.1"), -EAGAIN);
	assert_int_equal(addrwatch_lost(w), 0);
	seq = addrwatch_dump_seq(w);
	assert_true(seq != 0);
	for (size_t i = 0; i < n; i++)
		put_addr(&nb, RTM_NEWADDR, seq, addrs[i], 1, IFA_F_PERMANENT);
	put_done(&nb, seq);
	feed(w, &nb);
	assert_int_equal(addrwatch_dump_seq(w), 0);
	assert_int_equal(r->n, 0); /* the first dump reports nothing */
	return w;
}

static void test_addrwatch_first_dump_then_events(void **state)
{
	static const char *const addrs[] = {"192.0.2.10", "2001:db8::10"};
	struct reports r = {0};
	struct addrwatch *w = watch_with(&r, addrs, 2);
	struct nlbuf nb = {0};

	(void)state;
	assert_int_equal(present(w, "192.0.2.10"), 1);
	assert_int_equal(present(w, "2001:db8::10"), 1);
	assert_int_equal(present(w, "192.0.2.11"), 0);
	assert_int_equal(addrwatch_count(w), 2);

	put_addr(&nb, RTM_DELADDR, 77, "192.0.2.10", 1, 0); /* ip's own seq: an event */
	put_addr(&nb, RTM_NEWADDR, 0, "192.0.2.11", 1, IFA_F_PERMANENT);
	feed(w, &nb);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.addr[0], "192.0.2.10");
	assert_false(r.present[0]);
	assert_string_equal(r.addr[1], "192.0.2.11");
	assert_true(r.present[1]);
	assert_int_equal(present(w, "192.0.2.10"), 0);
	assert_int_equal(present(w, "192.0.2.11"), 1);
	/* an update that changes nothing usable reports nothing */
	put_addr(&nb, RTM_NEWADDR, 0, "192.0.2.11", 1, 0);
	feed(w, &nb);
	assert_int_equal(r.n, 2);
	addrwatch_stop(w);
}

static void test_addrwatch_tentative_and_dadfailed_are_absent(void **state)
{
	struct reports r = {0};
	struct addrwatch *w = watch_with(&r, NULL, 0);
	struct nlbuf nb = {0};

	(void)state;
	put_addr(&nb, RTM_NEWADDR, 0, "2001:db8::20", 2, IFA_F_TENTATIVE);
	feed(w, &nb);
	assert_int_equal(r.n, 0);
	assert_int_equal(present(w, "2001:db8::20"), 0);
	/* DAD done: the kernel sends the address again without the flag */
	put_addr(&nb, RTM_NEWADDR, 0, "2001:db8::20", 2, 0);
	feed(w, &nb);
	assert_int_equal(r.n, 1);
	assert_true(r.present[0]);
	/* optimistic DAD: usable while tentative */
	put_addr(&nb, RTM_NEWADDR, 0, "2001:db8::21", 2, IFA_F_TENTATIVE | IFA_F_OPTIMISTIC);
	feed(w, &nb);
	assert_int_equal(present(w, "2001:db8::21"), 1);
	/* a duplicate elsewhere on the link */
	put_addr(&nb, RTM_NEWADDR, 0, "2001:db8::20", 2, IFA_F_TENTATIVE | IFA_F_DADFAILED);
	feed(w, &nb);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.addr[2], "2001:db8::20");
	assert_false(r.present[2]);
	assert_int_equal(present(w, "2001:db8::20"), 0);
	addrwatch_stop(w);
}

static void test_addrwatch_address_on_two_interfaces(void **state)
{
	static const char *const addrs[] = {"192.0.2.30"};
	struct reports r = {0};
	struct addrwatch *w = watch_with(&r, addrs, 1);
	struct nlbuf nb = {0};

	(void)state;
	put_addr(&nb, RTM_NEWADDR, 0, "192.0.2.30", 5, IFA_F_PERMANENT);
	feed(w, &nb);
	assert_int_equal(r.n, 0); /* was present already */
	put_addr(&nb, RTM_DELADDR, 0, "192.0.2.30", 1, 0);
	feed(w, &nb);
	assert_int_equal(r.n, 0); /* still on interface 5 */
	assert_int_equal(present(w, "192.0.2.30"), 1);
	put_addr(&nb, RTM_DELADDR, 0, "192.0.2.30", 5, 0);
	feed(w, &nb);
	assert_int_equal(r.n, 1);
	assert_false(r.present[0]);
	/* a removal of something never seen is no change once the table is known */
	put_addr(&nb, RTM_DELADDR, 0, "192.0.2.99", 5, 0);
	feed(w, &nb);
	assert_int_equal(r.n, 1);
	addrwatch_stop(w);
}

static void test_addrwatch_resync_reports_what_was_missed(void **state)
{
	static const char *const addrs[] = {"192.0.2.1", "192.0.2.2", "2001:db8::3"};
	struct reports r = {0};
	struct addrwatch *w = watch_with(&r, addrs, 3);
	struct nlbuf nb = {0};
	uint32_t seq;

	(void)state;
	/* ENOBUFS: 192.0.2.2 went and 192.0.2.4 came while nobody read */
	assert_int_equal(addrwatch_lost(w), 0);
	seq = addrwatch_dump_seq(w);
	put_addr(&nb, RTM_NEWADDR, seq, "2001:db8::3", 1, IFA_F_PERMANENT);
	put_addr(&nb, RTM_NEWADDR, seq, "192.0.2.1", 1, IFA_F_PERMANENT);
	put_addr(&nb, RTM_NEWADDR, seq, "192.0.2.4", 1, IFA_F_PERMANENT);
	put_done(&nb, seq);
	feed(w, &nb);
	assert_int_equal(addrwatch_resyncs(w), 1);
	assert_int_equal(addrwatch_dump_seq(w), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.addr[0], "192.0.2.2");
	assert_false(r.present[0]);
	assert_string_equal(r.addr[1], "192.0.2.4");
	assert_true(r.present[1]);
	assert_int_equal(present(w, "192.0.2.2"), 0);
	assert_int_equal(present(w, "192.0.2.4"), 1);
	assert_int_equal(addrwatch_count(w), 3);
	addrwatch_stop(w);
}

static void test_addrwatch_events_during_a_dump_redo_it(void **state)
{
	static const char *const addrs[] = {"192.0.2.1"};
	struct reports r = {0};
	struct addrwatch *w = watch_with(&r, addrs, 1);
	struct nlbuf nb = {0};
	uint32_t seq, seq2;

	(void)state;
	assert_int_equal(addrwatch_lost(w), 0);
	seq = addrwatch_dump_seq(w);
	put_addr(&nb, RTM_NEWADDR, seq, "192.0.2.1", 1, IFA_F_PERMANENT);
	put_addr(&nb, RTM_DELADDR, 0, "192.0.2.1", 1, 0); /* an event mid-dump */
	put_done(&nb, seq);
	feed(w, &nb);
	/* the event was reported at once; the stale dump made it look back,
	 * and a second dump is under way to settle it */
	seq2 = addrwatch_dump_seq(w);
	assert_true(seq2 != 0 && seq2 != seq);
	put_done(&nb, seq2);
	feed(w, &nb);
	assert_int_equal(addrwatch_dump_seq(w), 0);
	assert_int_equal(present(w, "192.0.2.1"), 0);
	assert_true(r.n >= 1);
	assert_false(r.present[r.n - 1]); /* the last word: gone */
	addrwatch_stop(w);
}

static void test_addrwatch_removal_before_the_first_dump_is_news(void **state)
{
	struct reports r = {0};
	struct addrwatch *w = NULL;
	struct nlbuf nb = {0};

	(void)state;
	assert_int_equal(addrwatch_new(on_change, &r, &w), 0);
	assert_int_equal(addrwatch_lost(w), 0);
	put_addr(&nb, RTM_DELADDR, 0, "192.0.2.7", 1, 0);
	feed(w, &nb);
	assert_int_equal(r.n, 1);
	assert_false(r.present[0]);
	/* a truncated message is refused */
	put_addr(&nb, RTM_NEWADDR, 0, "192.0.2.8", 1, 0);
	assert_int_equal(addrwatch_feed(w, nb.b, 10), -EINVAL);
	assert_int_equal(addrwatch_feed(NULL, nb.b, nb.len), -EINVAL);
	assert_int_equal(addrwatch_new(NULL, NULL, &w), -EINVAL);
	addrwatch_stop(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addrwatch_first_dump_then_events),
	    cmocka_unit_test(test_addrwatch_tentative_and_dadfailed_are_absent),
	    cmocka_unit_test(test_addrwatch_address_on_two_interfaces),
	    cmocka_unit_test(test_addrwatch_resync_reports_what_was_missed),
	    cmocka_unit_test(test_addrwatch_events_during_a_dump_redo_it),
	    cmocka_unit_test(test_addrwatch_removal_before_the_first_dump_is_news),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
