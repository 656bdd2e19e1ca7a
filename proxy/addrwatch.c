/* addrwatch: the host's local addresses from rtnetlink, with resync on
 * lost events. See addrwatch.h for the contract. */
#include <errno.h>
#include <stddef.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addrwatch.h"
#include "conf.h"
#include "log.h"

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#ifndef IFA_F_OPTIMISTIC
#define IFA_F_OPTIMISTIC 0x04
#endif

/* Enough for a burst of a few thousand events between two reads. */
#define ADDRWATCH_RCVBUF (1 << 20)

/* One copy of an address on one interface. */
struct entry {
	uint8_t key[16]; /* IPv4 as v4-mapped IPv6 */
	uint32_t ifindex;
	uint32_t flags; /* IFA_F_* */
};

struct table {
	struct entry *e;
	size_t n, cap;
};

struct addrwatch {
	uv_poll_t poll;
	int fd;		 /* -1 without a socket */
	uint32_t portid; /* ours, to tell dump replies from notifications */
	addrwatch_cb cb;
	void *ctx;
	struct table tab;  /* what we believe now, sorted */
	struct table next; /* the dump being received, unsorted */
	bool known;	   /* the first dump is in */
	uint32_t seq;	   /* last dump sequence used */
	uint32_t dump_seq; /* running dump, 0 = none */
	bool dirty;	   /* events arrived while the dump ran */
	unsigned redumps;  /* dumps in a row redone because of events */
	uint64_t resyncs;
};

static bool key_of(const struct sockaddr *sa, uint8_t key[16])
{
	return conf_addr_key(sa, key) == 0;
}

static void sockaddr_of(const uint8_t key[16], struct sockaddr_storage *ss)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	memset(ss, 0, sizeof *ss);
	if (memcmp(key, mapped, 12) == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, key + 12, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, key, 16);
	}
}

/* A tentative address cannot be bound until DAD ends, unless optimistic. */
static bool usable(uint32_t flags)
{
	if (flags & IFA_F_DADFAILED)
		return false;
	return !(flags & IFA_F_TENTATIVE) || (flags & IFA_F_OPTIMISTIC);
}

static int entry_cmp(const struct entry *a, const uint8_t key[16], uint32_t ifindex)
{
	int c = memcmp(a->key, key, 16);

	if (c)
		return c;
	return a->ifindex < ifindex ? -1 : a->ifindex > ifindex;
}

static int qsort_cmp(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;

	return entry_cmp(a, b->key, b->ifindex);
}

/* First position whose (key, ifindex) is not below the given one. */
static size_t lower_bound(const struct table *t, const uint8_t key[16], uint32_t ifindex)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (entry_cmp(&t->e[mid], key, ifindex) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool table_present(const struct table *t, const uint8_t key[16])
{
	for (size_t i = lower_bound(t, key, 0); i < t->n && !memcmp(t->e[i].key, key, 16); i++)
		if (usable(t->e[i].flags))
			return true;
	return false;
}

static int table_reserve(struct table *t)
{
	struct entry *e;
	size_t cap;

	if (t->n < t->cap)
		return 0;
	cap = t->cap ? t->cap * 2 : 64;
	e = realloc(t->e, cap * sizeof *e);
	if (!e)
		return -ENOMEM;
	t->e = e;
	t->cap = cap;
	return 0;
}

static void report(struct addrwatch *w, const uint8_t key[16], bool present)
{
	struct sockaddr_storage ss;

	sockaddr_of(key, &ss);
	w->cb((const struct sockaddr *)&ss, present, w->ctx);
}

/* An event: the copy on `ifindex` is now there with `flags`, or gone. */
static void apply_event(struct addrwatch *w, const uint8_t key[16], uint32_t ifindex,
			uint32_t flags, bool gone)
{
	struct table *t = &w->tab;
	bool before = table_present(t, key), after;
	size_t i = lower_bound(t, key, ifindex);
	bool found = i < t->n && entry_cmp(&t->e[i], key, ifindex) == 0;

	if (gone && found) {
		memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof *t->e);
		t->n--;
	} else if (!gone && found) {
		t->e[i].flags = flags;
	} else if (!gone) {
		if (table_reserve(t) < 0) {
			log_error("addrwatch", "out of memory: resynchronising later");
			w->dirty = true;
			return;
		}
		memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof *t->e);
		memcpy(t->e[i].key, key, 16);
		t->e[i].ifindex = ifindex;
		t->e[i].flags = flags;
		t->n++;
	}
	after = table_present(t, key);
	/* Before the first dump the table is partial: a removal is news even
	 * when we never saw the address. */
	if (before != after || (!w->known && gone && !after))
		report(w, key, after);
}

/* The dump is complete: sort it, report what changed, make it the table. */
static void finish_dump(struct addrwatch *w)
{
	struct table *o = &w->tab, *d = &w->next;
	size_t i = 0, j = 0, k = 0;
	bool resync = w->known;

	if (d->n)
		qsort(d->e, d->n, sizeof *d->e, qsort_cmp);
	/* Duplicates (an address updated during the dump): keep the last. */
	for (size_t r = 0; r < d->n; r++) {
		if (k && entry_cmp(&d->e[k - 1], d->e[r].key, d->e[r].ifindex) == 0)
			d->e[k - 1] = d->e[r];
		else
			d->e[k++] = d->e[r];
	}
	d->n = k;
	struct table old = *o;
	*o = *d;
	*d = (struct table){0};
	w->known = true;
	w->dump_seq = 0;
	if (resync) {
		/* Walk both sorted tables address by address. */
		while (i < old.n || j < o->n) {
			const uint8_t *key;
			if (j >= o->n || (i < old.n && memcmp(old.e[i].key, o->e[j].key, 16) < 0))
				key = old.e[i].key;
			else
				key = o->e[j].key;
			bool was = table_present(&old, key), is = table_present(o, key);
			uint8_t copy[16];
			memcpy(copy, key, 16);
			while (i < old.n && !memcmp(old.e[i].key, copy, 16))
				i++;
			while (j < o->n && !memcmp(o->e[j].key, copy, 16))
				j++;
			if (was != is)
				report(w, copy, is);
		}
	}
	free(old.e);
	if (w->dirty && w->redumps < ADDRWATCH_REDUMP_MAX) {
		w->redumps++;
		addrwatch_lost(w);
	} else {
		w->redumps = 0;
	}
}

static void dump_failed(struct addrwatch *w, int err)
{
	log_warn("addrwatch", "address dump failed error=\"%s\"%s", strerror(err),
		 w->redumps < ADDRWATCH_REDUMP_MAX ? ": trying again" : "");
	w->dump_seq = 0;
	w->next.n = 0;
	if (w->redumps++ < ADDRWATCH_REDUMP_MAX)
		addrwatch_lost(w);
}

static void on_addr_msg(struct addrwatch *w, const struct nlmsghdr *nh, bool in_dump)
{
	const struct ifaddrmsg *ifa = NLMSG_DATA(nh);
	const void *local = NULL, *address = NULL;
	size_t alen = ifa->ifa_family == AF_INET ? 4 : 16;
	uint32_t flags = ifa->ifa_flags;
	uint8_t key[16];
	int len;

	if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
		return;
	len = (int)IFA_PAYLOAD(nh);
	for (const struct rtattr *rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
		if (rta->rta_type == IFA_FLAGS && RTA_PAYLOAD(rta) >= 4)
			memcpy(&flags, RTA_DATA(rta), 4);
		if (RTA_PAYLOAD(rta) < alen)
			continue;
		if (rta->rta_type == IFA_LOCAL)
			local = RTA_DATA(rta);
		else if (rta->rta_type == IFA_ADDRESS)
			address = RTA_DATA(rta);
	}
	/* IFA_LOCAL is the local address on point-to-point links, where
	 * IFA_ADDRESS is the peer's. */
	if (!local)
		local = address;
	if (!local)
		return;
	if (ifa->ifa_family == AF_INET) {
		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, local, 4);
	} else {
		memcpy(key, local, 16);
	}
	if (!in_dump) {
		if (w->dump_seq)
			w->dirty = true;
		apply_event(w, key, ifa->ifa_index, flags, nh->nlmsg_type == RTM_DELADDR);
		return;
	}
	if (nh->nlmsg_flags & NLM_F_DUMP_INTR)
		w->dirty = true;
	if (table_reserve(&w->next) < 0) {
		dump_failed(w, ENOMEM);
		return;
	}
	struct entry *e = &w->next.e[w->next.n++];
	memcpy(e->key, key, 16);
	e->ifindex = ifa->ifa_index;
	e->flags = flags;
}

int addrwatch_feed(struct addrwatch *w, const void *buf, size_t len)
{
	const struct nlmsghdr *nh = buf;
	size_t left = len;

	if (!w || !buf)
		return -EINVAL;
	for (; NLMSG_OK(nh, left); nh = NLMSG_NEXT(nh, left)) {
		bool in_dump = w->dump_seq && nh->nlmsg_seq == w->dump_seq &&
			       (w->fd < 0 || nh->nlmsg_pid == w->portid);

		if (in_dump && nh->nlmsg_type == NLMSG_DONE) {
			finish_dump(w);
			continue;
		}
		if (in_dump && nh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(nh);
			if (nh->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error)
				dump_failed(w, -e->error);
			continue;
		}
		if (nh->nlmsg_type != RTM_NEWADDR && nh->nlmsg_type != RTM_DELADDR)
			continue;
		if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
			return -EINVAL;
		on_addr_msg(w, nh, in_dump && nh->nlmsg_type == RTM_NEWADDR);
	}
	return left == 0 ? 0 : -EINVAL;
}

int addrwatch_lost(struct addrwatch *w)
{
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
	} req = {0};
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};

	if (!w)
		return -EINVAL;
	if (w->dump_seq) {
		w->dirty = true; /* the running dump may have lost replies too */
		return 0;
	}
	w->dirty = false;
	w->next.n = 0;
	if (w->known)
		w->resyncs++;
	if (++w->seq == 0)
		w->seq = 1;
	w->dump_seq = w->seq;
	if (w->fd < 0)
		return 0;
	req.nh.nlmsg_len = sizeof req;
	req.nh.nlmsg_type = RTM_GETADDR;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	req.nh.nlmsg_seq = w->dump_seq;
	req.ifa.ifa_family = AF_UNSPEC;
	if (sendto(w->fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
		int rc = -errno;
		w->dump_seq = 0;
		return rc;
	}
	return 0;
}

static void on_netlink(uv_poll_t *h, int status, int events)
{
	struct addrwatch *w = container_of(h, struct addrwatch, poll);
	char buf[16384] __attribute__((aligned(__alignof__(struct nlmsghdr))));
	ssize_t n;

	(void)events;
	/* An overflow sets a socket error: epoll says POLLERR, and libuv 1.44
	 * then stops the poll and reports UV_EBADF. The recv() below reads the
	 * error (ENOBUFS); polling must start again. */
	if (status < 0) {
		int rc = uv_poll_start(&w->poll, UV_READABLE, on_netlink);
		if (rc < 0)
			log_error("addrwatch", "cannot watch addresses any more error=\"%s\"",
				  uv_strerror(rc));
	}
	for (int rounds = 0; rounds < 64; rounds++) {
		n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n > 0) {
			addrwatch_feed(w, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == ENOBUFS) {
			log_warn("addrwatch", "the kernel dropped address events (ENOBUFS): "
					      "resynchronising from a full dump");
			int rc = addrwatch_lost(w);
			if (rc < 0)
				log_error("addrwatch",
					  "cannot ask for an address dump error=\"%s\"",
					  strerror(-rc));
			continue;
		}
		break; /* EAGAIN, or an error the next poll will show again */
	}
}

int addrwatch_new(addrwatch_cb cb, void *ctx, struct addrwatch **out)
{
	struct addrwatch *w;

	if (!cb || !out)
		return -EINVAL;
	w = calloc(1, sizeof *w);
	if (!w)
		return -ENOMEM;
	w->fd = -1;
	w->cb = cb;
	w->ctx = ctx;
	*out = w;
	return 0;
}

int addrwatch_start(struct addrwatch *w, uv_loop_t *loop)
{
	struct sockaddr_nl sa = {
	    .nl_family = AF_NETLINK,
	    .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
	};
	socklen_t len = sizeof sa;
	int fd, rc, size = ADDRWATCH_RCVBUF;

	if (!w || !loop || w->fd >= 0)
		return -EINVAL;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	/* FORCE passes rmem_max when we may (root); plain RCVBUF otherwise. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	w->portid = sa.nl_pid;
	rc = uv_poll_init(loop, &w->poll, fd);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	w->fd = fd;
	/* Subscribed first, then the dump: nothing falls between the two.
	 * On failure the handle stays (stopped) for addrwatch_stop() to close. */
	rc = addrwatch_lost(w);
	if (rc == 0)
		rc = uv_poll_start(&w->poll, UV_READABLE, on_netlink);
	return rc;
}

int addrwatch_present(const struct addrwatch *w, const struct sockaddr *addr)
{
	uint8_t key[16];

	if (!w || !addr || !key_of(addr, key))
		return -EINVAL;
	if (!w->known)
		return -EAGAIN;
	return table_present(&w->tab, key) ? 1 : 0;
}

size_t addrwatch_count(const struct addrwatch *w)
{
	return w ? w->tab.n : 0;
}

uint64_t addrwatch_resyncs(const struct addrwatch *w)
{
	return w ? w->resyncs : 0;
}

uint32_t addrwatch_dump_seq(const struct addrwatch *w)
{
	return w ? w->dump_seq : 0;
}

static void watch_free(struct addrwatch *w)
{
	free(w->tab.e);
	free(w->next.e);
	free(w);
}

static void on_closed(uv_handle_t *h)
{
	struct addrwatch *w = container_of((uv_poll_t *)h, struct addrwatch, poll);

	close(w->fd);
	watch_free(w);
}

void addrwatch_stop(struct addrwatch *w)
{
	if (!w)
		return;
	if (w->fd < 0) {
		watch_free(w);
		return;
	}
	uv_close((uv_handle_t *)&w->poll, on_closed);
}
