/* classify: SPEC 4.2, what each outbound failure means (see classify.h). */
#include <uv.h>

#include "classify.h"
#include "socks5.h"

uint8_t classify_rep_for(int uv_err)
{
	switch (uv_err) {
	case UV_ECONNREFUSED:
		return SOCKS5_REP_CONN_REFUSED;
	case UV_ENETUNREACH:
		return SOCKS5_REP_NET_UNREACHABLE;
	case UV_EHOSTUNREACH:
		return SOCKS5_REP_HOST_UNREACHABLE;
	case UV_ETIMEDOUT:
		return SOCKS5_REP_TTL_EXPIRED;
	case UV_EACCES:
	case UV_EPERM:
		return SOCKS5_REP_NOT_ALLOWED;
	default:
		return SOCKS5_REP_GENERAL_FAILURE;
	}
}

bool classify_may_be_vanished(int err)
{
	return err == UV_ENETUNREACH || err == UV_EHOSTUNREACH || err == UV_EADDRNOTAVAIL ||
	       err == UV_EINVAL;
}

static struct classify_verdict verdict(enum classify_blame blame, enum classify_next next,
				       uint8_t rep)
{
	return (struct classify_verdict){.blame = blame, .next = next, .rep = rep};
}

/* Before any pinning rule: the verdict for a source the pool picked. */
static struct classify_verdict classify_picked(const struct classify_input *in)
{
	switch (in->phase) {
	case CLASSIFY_BIND:
		if (in->err == UV_EADDRNOTAVAIL)
			return verdict(CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_NEXT_SOURCE,
				       SOCKS5_REP_GENERAL_FAILURE);
		return verdict(CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE);
	case CLASSIFY_CONNECT:
		if (in->source_gone && classify_may_be_vanished(in->err))
			return verdict(CLASSIFY_BLAME_UNPLUMBED, CLASSIFY_NEXT_SOURCE,
				       SOCKS5_REP_GENERAL_FAILURE);
		if (in->err == UV_EADDRNOTAVAIL || in->err == UV_EADDRINUSE)
			return verdict(CLASSIFY_BLAME_PORTS, CLASSIFY_NEXT_SOURCE,
				       SOCKS5_REP_GENERAL_FAILURE);
		return verdict(CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, classify_rep_for(in->err));
	case CLASSIFY_UPSTREAM_HANDSHAKE:
	case CLASSIFY_UPSTREAM_BIND:
		return verdict(CLASSIFY_BLAME_PROXY, CLASSIFY_NEXT_SOURCE,
			       SOCKS5_REP_GENERAL_FAILURE);
	case CLASSIFY_UPSTREAM_CONNECT:
		return verdict(CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST,
			       in->rep ? in->rep : SOCKS5_REP_GENERAL_FAILURE);
	}
	return verdict(CLASSIFY_BLAME_NONE, CLASSIFY_NEXT_DEST, SOCKS5_REP_GENERAL_FAILURE);
}

struct classify_verdict classify_failure(const struct classify_input *in)
{
	struct classify_verdict v = classify_picked(in);

	if (!in->pinned || v.next != CLASSIFY_NEXT_SOURCE)
		return v;
	if (v.blame == CLASSIFY_BLAME_PORTS)
		v.next = CLASSIFY_NEXT_DEST;
	else
		v.next = CLASSIFY_REPLY;
	v.rep = SOCKS5_REP_GENERAL_FAILURE;
	return v;
}
