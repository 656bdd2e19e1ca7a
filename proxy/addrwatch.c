/* addrwatch: end unplumbed suspensions when the address comes back.
 *
 * A netlink socket subscribed to address events; when an address is added
 * that belongs to a source with `resume_when_plumbed = yes` and that source
 * is suspended as unplumbed, the suspension ends at once instead of at its
 * expiry.
 */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addrwatch.h"
#include "gen.h"
#include "proxy.h"
#include "log.h"
#include "pool.h"

struct addrwatch {
	uv_poll_t poll;
	struct proxy *px;
	int fd;
};

static void address_added(struct proxy *px, int family, const void *addr)
{
	const struct conf *conf = px->gen->conf;
	struct sockaddr_storage ss = {0};
	struct pool_source_info info;
	uint64_t now = uv_now(px->loop);
	int idx;

	ss.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, addr, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, addr, 16);
	idx = gen_find_source(px->gen, (struct sockaddr *)&ss);
	if (idx < 0 || !conf->sources[idx].resume_when_plumbed)
		return;
	struct pool_source *src = gen_pool_source(px->gen, (size_t)idx);
	if (!src)
		return;
	pool_source_get_info(src, now, &info);
	if (info.state != POOL_STATE_SUSPENDED || info.reason != POOL_REASON_UNPLUMBED)
		return;
	log_info("addrwatch", "address is back source=%s", conf->sources[idx].name);
	pool_source_resume(src, now);
}

static void on_netlink(uv_poll_t *h, int status, int events)
{
	struct addrwatch *w = container_of(h, struct addrwatch, poll);
	char buf[8192] __attribute__((aligned(__alignof__(struct nlmsghdr))));
	ssize_t n;

	(void)events;
	if (status < 0)
		return;
	while ((n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n);
		     nh = NLMSG_NEXT(nh, n)) {
			struct ifaddrmsg *ifa;
			struct rtattr *rta;
			const void *local = NULL, *address = NULL;
			int len;

			if (nh->nlmsg_type != RTM_NEWADDR)
				continue;
			ifa = NLMSG_DATA(nh);
			if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)
				continue;
			len = (int)IFA_PAYLOAD(nh);
			for (rta = IFA_RTA(ifa); RTA_OK(rta, len); rta = RTA_NEXT(rta, len)) {
				size_t want = ifa->ifa_family == AF_INET ? 4 : 16;
				if (RTA_PAYLOAD(rta) < want)
					continue;
				if (rta->rta_type == IFA_LOCAL)
					local = RTA_DATA(rta);
				else if (rta->rta_type == IFA_ADDRESS)
					address = RTA_DATA(rta);
			}
			/* IFA_LOCAL is the local address on point-to-point links,
			 * where IFA_ADDRESS is the peer's. */
			if (local || address)
				address_added(w->px, ifa->ifa_family, local ? local : address);
		}
	}
}

int addrwatch_start(struct proxy *px, struct addrwatch **out)
{
	struct sockaddr_nl sa = {
	    .nl_family = AF_NETLINK,
	    .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
	};
	struct addrwatch *w = calloc(1, sizeof *w);
	int rc;

	if (!w)
		return -ENOMEM;
	w->px = px;
	w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	if (w->fd < 0 || bind(w->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		rc = -errno;
		if (w->fd >= 0)
			close(w->fd);
		free(w);
		return rc;
	}
	rc = uv_poll_init(px->loop, &w->poll, w->fd);
	if (rc == 0)
		rc = uv_poll_start(&w->poll, UV_READABLE, on_netlink);
	if (rc < 0) {
		close(w->fd);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct addrwatch *w = container_of((uv_poll_t *)h, struct addrwatch, poll);

	close(w->fd);
	free(w);
}

void addrwatch_stop(struct addrwatch *w)
{
	if (w)
		uv_close((uv_handle_t *)&w->poll, on_closed);
}
