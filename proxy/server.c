/* server: the process and its workers: listening sockets (and their
 * refuse-mode pause), commands to the workers, signals, reload, the prefix
 * route probe, start and shutdown. */
#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "authq.h"
#include "confwatch.h"
#include "egress.h"
#include "emfile.h"
#include "gen.h"
#include "health.h"
#include "log.h"
#include "lsock.h"
#include "notify.h"
#include "pool.h"
#include "poolsync.h"
#include "proxy.h"
#include "splice.h"
#include "stat.h"
#include "throttle.h"
#include "workers.h"

/* Fast Open queue of every listening socket (Exim may send its greeting as
 * TFO data). */
#define SERVER_TFO_QLEN 256

/* How long a listener that ran out of descriptors stays closed before it
 * is opened again (and again, while descriptors are short). */
#define SERVER_STARVED_RETRY_MS 100

static void listeners_sync(struct proxy *px);
static void listeners_close(struct proxy *px);
static void listener_close(struct listener *l);
static void listener_starve(struct listener *l);
static void listen_retry_arm(struct proxy *px);
static void main_maybe_finish(struct proxy_main *m);

/* Tell every worker: through its mailbox, or, with one worker on the main
 * loop, by calling it right here. */
static void worker_command(struct proxy *px, unsigned cmds);

static void proxy_tell(struct proxy_main *m, unsigned cmds)
{
	if (m->threads)
		workers_post(m->threads, cmds);
	else
		worker_command(&m->px[0], cmds);
}

static const char *addr_pool(const struct proxy_gen *gen, const struct listen_addr *la)
{
	return la->pool ? la->pool : gen->conf->server.default_pool;
}

static struct lsock_opts listen_opts(const struct proxy_main *m, uint64_t keepalive_ms)
{
	return (struct lsock_opts){
	    /* Only with several workers: one worker's socket must keep a
	     * second sockpool on the same port out, as it always did. */
	    .reuseport = m->n_workers > 1,
	    .fastopen_qlen = SERVER_TFO_QLEN,
	    .nodelay = true,
	    .keepalive_ms = keepalive_ms,
	};
}

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = container_of((uv_tcp_t *)server, struct listener, tcp);

	if (status < 0) {
		proxy_accept_failed(l->px, l->bound_str, status);
		/* Without a reserve libuv would call again at once, in a loop
		 * that keeps this worker's timers from running until a
		 * descriptor frees; closing the listener ends it. */
		if ((status == UV_EMFILE || status == UV_ENFILE) && emfile_accept_error(l->px) < 0)
			listener_starve(l);
		return;
	}
	session_accept(l);
}

static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = container_of((uv_tcp_t *)h, struct listener, tcp);

	l->px->n_listeners_open--;
	l->closing = false;
	/* Wanted again while it was closing. */
	listeners_sync(l->px);
}

/* A socket that never listened: no retry from here, or a port that cannot
 * be had would be tried again and again. */
static void on_listener_failed(uv_handle_t *h)
{
	struct listener *l = container_of((uv_tcp_t *)h, struct listener, tcp);

	l->px->n_listeners_open--;
	l->closing = false;
}

/* Close this worker's socket (its fd is closed at once). The worker that
 * closes the last socket of a paused address says so: from then on the
 * address refuses connections. */
static void listener_close(struct listener *l)
{
	struct proxy_main *m = l->px->main;
	bool last_paused;

	if (!l->open)
		return;
	l->open = false;
	l->closing = true;
	uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
	uv_mutex_lock(&m->listen_mu);
	last_paused = --l->la->n_open == 0 && l->la->paused;
	uv_mutex_unlock(&m->listen_mu);
	if (last_paused && !l->px->stopping)
		log_warn("server",
			 "pool %s exhausted: listener addr=%s closed until a source returns",
			 addr_pool(l->px->gen, l->la), l->bound_str);
}

/* Serve `fd` (from lsock_open, owned by this call) as worker px's socket of
 * its address. `reopen`: back after on_pool_exhausted = refuse. */
static int listener_start(struct proxy *px, struct listener *l, int fd, uint64_t keepalive_ms,
			  bool reopen)
{
	struct proxy_main *m = px->main;
	bool first;
	int rc;

	rc = uv_tcp_init(px->loop, &l->tcp);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	px->n_listeners_open++;
	l->closing = true; /* until it listens: a failure below closes it */
	l->keepalive_ms = keepalive_ms;
	if ((rc = uv_tcp_open(&l->tcp, fd)) < 0) {
		close(fd);
		uv_close((uv_handle_t *)&l->tcp, on_listener_failed);
		return rc;
	}
	if ((rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection)) < 0) {
		uv_close((uv_handle_t *)&l->tcp, on_listener_failed);
		return rc;
	}
	l->closing = false;
	l->open = true;
	uv_mutex_lock(&m->listen_mu);
	first = l->la->n_open++ == 0;
	uv_mutex_unlock(&m->listen_mu);
	if (reopen && first)
		log_info("server", "listening again addr=%s pool=%s", l->bound_str,
			 addr_pool(px->gen, l->la));
	return 0;
}

/* Match this worker's sockets to what the process wants: close those of
 * paused addresses, reopen the others (on the port they had, so clients
 * find them where they were). */
static void listeners_sync(struct proxy *px)
{
	struct proxy_main *m = px->main;

	for (size_t i = 0; i < px->n_listeners; i++) {
		struct listener *l = &px->listeners[i];
		uint64_t keepalive_ms = px->gen->conf->server.tcp_keepalive_ms;
		struct lsock_opts opts = listen_opts(m, keepalive_ms);
		bool paused;
		int fd, rc;

		if (l->la->absent)
			continue;
		uv_mutex_lock(&m->listen_mu);
		paused = l->la->paused;
		uv_mutex_unlock(&m->listen_mu);
		if (paused) {
			if (l->open)
				l->refused = true;
			listener_close(l);
			continue;
		}
		if (l->open || l->closing || l->starved || px->stopping)
			continue;
		fd = lsock_open((const struct sockaddr *)&l->la->bound, &opts);
		rc = fd < 0 ? fd : listener_start(px, l, fd, keepalive_ms, l->refused);
		if (rc == -EMFILE || rc == -ENFILE) {
			/* Still short of descriptors: not given up, tried again. */
			l->starved = true;
			listen_retry_arm(px);
		} else if (rc < 0)
			log_error("server",
				  "cannot listen again addr=%s error=\"%s\"; it stays closed until "
				  "the next pool change",
				  l->bound_str, uv_strerror(rc));
		else
			l->refused = false;
	}
}

static void listeners_close(struct proxy *px)
{
	for (size_t i = 0; i < px->n_listeners; i++)
		listener_close(&px->listeners[i]);
}

static void on_listen_retry(uv_timer_t *t)
{
	struct proxy *px = container_of(t, struct proxy, listen_retry);

	for (size_t i = 0; i < px->n_listeners; i++)
		px->listeners[i].starved = false;
	listeners_sync(px);
}

static void listen_retry_arm(struct proxy *px)
{
	if (px->stopping)
		return;
	if (!px->listen_retry_init) {
		uv_timer_init(px->loop, &px->listen_retry);
		px->listen_retry_init = true;
	}
	if (!uv_is_active((uv_handle_t *)&px->listen_retry))
		uv_timer_start(&px->listen_retry, on_listen_retry, SERVER_STARVED_RETRY_MS, 0);
}

static void listen_retry_stop(struct proxy *px)
{
	if (!px->listen_retry_init)
		return;
	px->listen_retry_init = false;
	uv_close((uv_handle_t *)&px->listen_retry, NULL);
}

/* Out of descriptors with no reserve for libuv: close this worker's socket
 * (the connections queued on it are reset, as libuv's trick would have
 * dropped them; with SO_REUSEPORT the kernel sends new ones to the other
 * workers' sockets) and open it again after SERVER_STARVED_RETRY_MS. */
static void listener_starve(struct listener *l)
{
	if (!l->open)
		return;
	l->starved = true;
	listener_close(l);
	listen_retry_arm(l->px);
	log_debug("server", "out of file descriptors: listener addr=%s worker=%u closed for %d ms",
		  l->bound_str, l->px->index, SERVER_STARVED_RETRY_MS);
}

void proxy_pool_exhausted(struct proxy *px, const char *name)
{
	struct proxy_main *m = px->main;
	bool changed = false;

	if (px->gen->conf->server.on_pool_exhausted != CONF_POOL_EXHAUSTED_REFUSE)
		return;
	uv_mutex_lock(&m->listen_mu);
	for (size_t i = 0; i < m->n_addrs; i++) {
		struct listen_addr *la = &m->addrs[i];
		if (la->absent || la->source_same || la->paused ||
		    strcmp(addr_pool(px->gen, la), name) != 0)
			continue;
		la->paused = true;
		changed = true;
	}
	uv_mutex_unlock(&m->listen_mu);
	if (changed)
		proxy_tell(m, WORKER_CMD_LISTENERS);
}

void proxy_listeners_resume(struct proxy_main *m)
{
	bool changed = false;

	if (m->stopping)
		return;
	poolsync_lock(&m->sync);
	uv_mutex_lock(&m->listen_mu);
	for (size_t i = 0; i < m->n_addrs; i++) {
		struct listen_addr *la = &m->addrs[i];
		struct pool *pool;

		if (!la->paused)
			continue;
		pool = pool_set_pool(m->gen->pools, addr_pool(m->gen, la));
		if (pool && pool_count_eligible(pool, POOL_FAMILY_ANY) == 0)
			continue;
		la->paused = false;
		changed = true;
	}
	uv_mutex_unlock(&m->listen_mu);
	poolsync_unlock(&m->sync);
	if (changed)
		proxy_tell(m, WORKER_CMD_LISTENERS);
}

/* A prefix the host does not route locally would bind fine (FREEBIND) and
 * then fail every connection: such a source is taken out of rotation. The
 * probe connects and may block for a second, so it runs in the threadpool
 * and holds the generation whose conf it reads. */
struct prefix_probe {
	uv_work_t work;
	struct proxy_main *m;
	struct proxy_gen *gen;
	size_t idx;
	int rc;
};

static void on_prefix_probe(uv_work_t *w)
{
	struct prefix_probe *p = container_of(w, struct prefix_probe, work);

	p->rc = egress_probe_prefix(&p->gen->conf->sources[p->idx]);
}

static void prefix_verdict(struct proxy_main *m, const struct conf_source *cs,
			   struct pool_source *src, int rc)
{
	uint64_t now = uv_now(m->loop);
	struct pool_source_info info;

	if (rc < 0) {
		log_warn("server",
			 "prefix source=%s is not routed to this host error=\"%s\"; add "
			 "`ip route add local PREFIX dev lo` (ip -6 for IPv6) and reload",
			 cs->name, strerror(-rc));
		if (src)
			poolsync_suspend(&m->sync, src, UINT64_MAX, now);
		return;
	}
	log_info("server", "prefix source=%s is routed locally", cs->name);
	if (!src)
		return;
	/* Fixed since a failed check at start or an earlier reload. */
	poolsync_lock(&m->sync);
	pool_source_get_info(src, now, &info);
	if (info.state == POOL_STATE_SUSPENDED && info.reason == POOL_REASON_MANUAL &&
	    info.suspended_until_ms == UINT64_MAX)
		pool_source_resume(src, now);
	poolsync_unlock(&m->sync);
}

static void on_prefix_probed(uv_work_t *w, int status)
{
	struct prefix_probe *p = container_of(w, struct prefix_probe, work);

	/* A later reload probes its own generation; this answer is stale. */
	if (status == 0 && p->gen == p->m->gen && !p->m->stopping)
		prefix_verdict(p->m, &p->gen->conf->sources[p->idx],
			       gen_pool_source(p->gen, p->idx), p->rc);
	proxy_gen_unref(p->gen);
	free(p);
}

/* At start nothing is relayed yet, and the first request must not find an
 * unrouted prefix still in rotation: the probes run before any worker
 * serves, on the main thread. */
static void prefixes_check_at_start(struct proxy_main *m)
{
	const struct conf *conf = m->gen->conf;

	for (size_t i = 0; i < conf->n_sources; i++)
		if (conf->sources[i].kind == CONF_SOURCE_PREFIX)
			prefix_verdict(m, &conf->sources[i], gen_pool_source(m->gen, i),
				       egress_probe_prefix(&conf->sources[i]));
}

/* On reload live relays must not wait: the probes run in the threadpool. */
static void prefixes_check(struct proxy_main *m)
{
	const struct conf *conf = m->gen->conf;

	for (size_t i = 0; i < conf->n_sources; i++) {
		struct prefix_probe *p;
		int rc;

		if (conf->sources[i].kind != CONF_SOURCE_PREFIX)
			continue;
		p = calloc(1, sizeof *p);
		if (!p) {
			log_error("server", "out of memory probing prefix source=%s",
				  conf->sources[i].name);
			continue;
		}
		*p = (struct prefix_probe){.m = m, .gen = m->gen, .idx = i};
		rc = uv_queue_work(m->loop, &p->work, on_prefix_probe, on_prefix_probed);
		if (rc < 0) {
			log_error("server", "cannot probe prefix source=%s error=\"%s\"",
				  conf->sources[i].name, uv_strerror(rc));
			free(p);
			continue;
		}
		proxy_gen_ref(m->gen);
	}
}

/* A worker takes the process's current generation for its next sessions. */
static void worker_take_gen(struct proxy *px)
{
	struct proxy_main *m = px->main;
	struct proxy_gen *old = px->gen;

	uv_mutex_lock(&m->gen_mu);
	px->gen = m->gen;
	proxy_gen_ref(px->gen);
	uv_mutex_unlock(&m->gen_mu);
	proxy_gen_unref(old);
}

void proxy_address_gone(struct proxy_main *m, const struct sockaddr *addr)
{
	size_t len =
	    addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);

	uv_mutex_lock(&m->gone_mu);
	m->gone_seq++;
	memset(&m->gone[m->gone_seq % PROXY_GONE_RING].addr, 0, sizeof m->gone[0].addr);
	memcpy(&m->gone[m->gone_seq % PROXY_GONE_RING].addr, addr, len);
	m->gone[m->gone_seq % PROXY_GONE_RING].seq = m->gone_seq;
	uv_mutex_unlock(&m->gone_mu);
	proxy_tell(m, WORKER_CMD_ADDR_GONE);
}

/* A worker moves its sessions off the addresses that left since it last
 * looked. */
static void worker_addresses_gone(struct proxy *px)
{
	struct proxy_main *m = px->main;
	struct sockaddr_storage addrs[PROXY_GONE_RING];
	size_t n = 0;

	uv_mutex_lock(&m->gone_mu);
	for (uint64_t seq = px->gone_seen + 1; seq <= m->gone_seq; seq++)
		if (m->gone[seq % PROXY_GONE_RING].seq == seq)
			addrs[n++] = m->gone[seq % PROXY_GONE_RING].addr;
	px->gone_seen = m->gone_seq;
	uv_mutex_unlock(&m->gone_mu);
	for (size_t i = 0; i < n; i++) {
		size_t moved = attempt_address_gone(px, (const struct sockaddr *)&addrs[i]);
		char text[64];

		if (!moved)
			continue;
		conf_addr_str((const struct sockaddr *)&addrs[i], text, sizeof text);
		log_info("addrwatch",
			 "connects from the address moved to other sources address=%s count=%zu",
			 text, moved);
	}
}

/* A draining worker with no session left closes its splice loop, whose
 * handles (unreferenced) would otherwise stay open past the loop's end. */
static void worker_maybe_idle(struct proxy *px)
{
	if (px->stopping && px->n_sessions == 0 && px->splice) {
		splice_loop_close(px->splice);
		px->splice = NULL;
	}
}

static void worker_command(struct proxy *px, unsigned cmds)
{
	if (cmds & WORKER_CMD_RELOAD)
		worker_take_gen(px);
	if (cmds & WORKER_CMD_ADDR_GONE)
		worker_addresses_gone(px);
	if (cmds & WORKER_CMD_LISTENERS)
		listeners_sync(px);
	if (cmds & (WORKER_CMD_DRAIN | WORKER_CMD_SHUTDOWN)) {
		px->stopping = true;
		listeners_close(px);
		listen_retry_stop(px);
		emfile_watch_stop(px);
	}
	/* A second signal or the shutdown timeout: do not wait any longer. */
	if (cmds & WORKER_CMD_SHUTDOWN)
		session_close_all(px);
	worker_maybe_idle(px);
	if (!px->main->threads)
		main_maybe_finish(px->main);
}

/* Close the main loop's own handles once every worker is done: with
 * threads when the last one has ended (on_workers_done), with one worker on
 * this loop when its last session has. */
static void main_maybe_finish(struct proxy_main *m)
{
	if (!m->stopping || m->finished)
		return;
	if (m->threads ? !m->workers_done : m->px && m->px[0].n_sessions > 0)
		return;
	m->finished = true;
	uv_close((uv_handle_t *)&m->sig_term, NULL);
	uv_close((uv_handle_t *)&m->sig_int, NULL);
	uv_close((uv_handle_t *)&m->sig_hup, NULL);
	uv_close((uv_handle_t *)&m->sig_usr1, NULL);
	/* Every worker is done: nobody logs through it any more. */
	if (m->px)
		throttle_stop(&m->px[0]);
	uv_close((uv_handle_t *)&m->expire_timer, NULL);
	uv_close((uv_handle_t *)&m->shutdown_timer, NULL);
	poolwatch_stop(m);
}

static void on_workers_done(struct workers *ws, void *ctx)
{
	struct proxy_main *m = ctx;

	(void)ws;
	m->workers_done = true;
	main_maybe_finish(m);
}

void proxy_session_gone(struct proxy *px)
{
	worker_maybe_idle(px);
	/* A worker thread's loop ends by itself once drained. */
	if (px->stopping && !px->main->threads)
		main_maybe_finish(px->main);
}

void proxy_stats_sum(struct proxy_main *m, struct proxy_stats *out)
{
	memset(out, 0, sizeof *out);
	for (unsigned i = 0; i < m->n_workers; i++)
		proxy_stats_add(out, &m->px[i].stats);
}

static uint64_t sessions_live(struct proxy_main *m)
{
	return atomic_load_explicit(&m->n_sessions, memory_order_relaxed);
}

static void on_shutdown_timer(uv_timer_t *t)
{
	struct proxy_main *m = container_of(t, struct proxy_main, shutdown_timer);

	log_warn("server", "shutdown timeout: closing live connections count=%llu",
		 (unsigned long long)sessions_live(m));
	proxy_tell(m, WORKER_CMD_SHUTDOWN);
}

static void begin_shutdown(struct proxy_main *m, int signum)
{
	uint64_t live = sessions_live(m);

	if (m->stopping) {
		/* A second signal means: do not wait any longer. */
		proxy_tell(m, WORKER_CMD_SHUTDOWN);
		return;
	}
	m->stopping = true;
	notify_stopping();
	confwatch_set(&m->confwatch, m->loop, NULL, false, NULL, NULL);
	log_info("server", "stopping signal=%s live=%llu drain_limit_ms=%llu", strsignal(signum),
		 (unsigned long long)live,
		 (unsigned long long)m->gen->conf->server.shutdown_timeout_ms);
	admin_stop(m->admin);
	m->admin = NULL;
	/* Its pool watcher may run on any worker, under the pool lock. */
	poolsync_lock(&m->sync);
	health_stop(m->health);
	m->health = NULL;
	poolsync_unlock(&m->sync);
	poolwatch_stop(m);
	if (live > 0)
		uv_timer_start(&m->shutdown_timer, on_shutdown_timer,
			       m->gen->conf->server.shutdown_timeout_ms, 0);
	proxy_tell(m, WORKER_CMD_DRAIN);
}

static void on_signal(uv_signal_t *s, int signum)
{
	begin_shutdown(s->data, signum);
}

static void on_sigusr1(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	log_reopen();
}

static bool addr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	char x[64], y[64];

	conf_addr_str((const struct sockaddr *)a, x, sizeof x);
	conf_addr_str((const struct sockaddr *)b, y, sizeof y);
	return strcmp(x, y) == 0;
}

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Whether a reloaded file leaves alone what only a restart applies: the
 * listeners as they were opened, admin_listen, user and workers. */
static bool restart_settings_same(const struct proxy_main *m, const struct conf_server *b)
{
	if (m->n_addrs != b->n_listens || m->boot_admin_enabled != b->admin_enabled ||
	    (b->admin_enabled && !addr_same(&m->boot_admin_listen, &b->admin_listen)) ||
	    !str_same(m->boot_user, b->user) || m->boot_workers != b->workers)
		return false;
	for (size_t i = 0; i < b->n_listens; i++) {
		const struct listen_addr *la = &m->addrs[i];
		if (!addr_same(&la->conf_addr, &b->listens[i].addr) ||
		    !str_same(la->pool, b->listens[i].pool) ||
		    la->source_same != b->listens[i].source_same)
			return false;
	}
	return true;
}

static void on_conf_changed(void *arg);

static void on_sighup(uv_signal_t *s, int signum)
{
	struct proxy_main *m = s->data;
	struct conf *conf = NULL;
	struct proxy_gen *gen = NULL, *old;
	char err[CONF_ERR_MAX] = "";
	int rc;

	(void)signum;
	if (!m->reload_path) {
		log_warn("server",
			 "SIGHUP ignored: running on the embedded default, no file to reload");
		return;
	}
	notify_reloading();
	rc = conf_load_file(m->reload_path, &conf, err, sizeof err);
	if (rc == 0)
		rc = proxy_gen_new(conf, m->gen, NULL, &gen, err, sizeof err);
	if (rc == 0) {
		rc = log_configure(&conf->server, err, sizeof err);
		if (rc < 0)
			proxy_gen_unref(gen); /* frees conf with it */
	}
	if (rc < 0) {
		log_error("server", "reload rejected, keeping the running configuration: %s",
			  err[0] ? err : strerror(-rc));
		stat_add(&m->px[0].stats.reloads_failed, 1);
		notify_ready();
		return;
	}
	for (size_t i = 0; i < conf->n_warnings; i++)
		log_warn("conf", "%s", conf->warnings[i]);
	/* Listeners stay as they are: rebinding sockets under live clients is
	 * not something a reload should do behind the operator's back. */
	if (!restart_settings_same(m, &conf->server))
		log_warn("server", "reload: listen, admin_listen, user and workers changes take "
				   "effect at the next restart");
	uv_mutex_lock(&m->gen_mu);
	old = m->gen;
	m->gen = gen;
	uv_mutex_unlock(&m->gen_mu);
	proxy_tell(m, WORKER_CMD_RELOAD);
	proxy_gen_unref(old);
	/* Written by the main thread only, in worker 0's counters. */
	stat_add(&m->px[0].stats.reloads_ok, 1);
	__atomic_store_n(&m->px[0].stats.reload_ok_wall_ms, (uint64_t)time(NULL) * 1000,
			 __ATOMIC_RELAXED);
	prefixes_check(m);
	poolwatch_kick(m);
	health_reload(m->health);
	confwatch_set(&m->confwatch, m->loop, m->reload_path, conf->server.reload_on_change,
		      on_conf_changed, m);
	log_info("server", "reloaded path=%s sources=%zu pools=%zu", m->reload_path,
		 conf->n_sources, conf->n_pools);
	notify_ready();
}

static void on_conf_changed(void *arg)
{
	struct proxy_main *m = arg;

	log_info("server", "configuration file changed path=%s: reloading", m->reload_path);
	on_sighup(&m->sig_hup, SIGHUP);
}

static int drop_privileges(const char *user, const char *reload_path)
{
	struct passwd *pw = getpwnam(user);

	if (!pw) {
		log_error("server", "user=%s: no such user", user);
		return -ENOENT;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		int e = errno;
		log_error("server", "cannot drop privileges to user=%s error=\"%s\"", user,
			  strerror(e));
		return -e;
	}
	log_info("server", "running as user=%s uid=%u", user, (unsigned)pw->pw_uid);
	/* SIGHUP reads the file again as this user: say now, not at the first reload. */
	if (reload_path && access(reload_path, R_OK) < 0)
		log_warn("server",
			 "path=%s is not readable by user=%s: every SIGHUP reload will fail; "
			 "make it readable by that user (e.g. chgrp GROUP, mode 0640)",
			 reload_path, user);
	return 0;
}

/* workers = auto: the CPUs this process may run on (its affinity mask). */
static unsigned workers_wanted(const struct conf *conf)
{
	unsigned n = conf->server.workers ? conf->server.workers : uv_available_parallelism();

	return n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : n;
}

/* The loop and the process-wide handles. A failure here is fatal: the
 * process exits without unwinding what was set up.
 * @return 0 or a libuv error. */
static int proxy_handles_init(struct proxy_main *m)
{
	int rc = uv_loop_init(&m->loop_storage);

	if (rc < 0)
		return rc;
	m->loop = &m->loop_storage;
	m->sig_term.data = m->sig_int.data = m->sig_hup.data = m->sig_usr1.data = m;
	if ((rc = uv_timer_init(m->loop, &m->expire_timer)) < 0 ||
	    (rc = uv_timer_init(m->loop, &m->shutdown_timer)) < 0 ||
	    (rc = uv_signal_init(m->loop, &m->sig_term)) < 0 ||
	    (rc = uv_signal_init(m->loop, &m->sig_int)) < 0 ||
	    (rc = uv_signal_init(m->loop, &m->sig_hup)) < 0 ||
	    (rc = uv_signal_init(m->loop, &m->sig_usr1)) < 0 ||
	    (rc = uv_signal_start(&m->sig_term, on_signal, SIGTERM)) < 0 ||
	    (rc = uv_signal_start(&m->sig_int, on_signal, SIGINT)) < 0 ||
	    (rc = uv_signal_start(&m->sig_hup, on_sighup, SIGHUP)) < 0 ||
	    (rc = uv_signal_start(&m->sig_usr1, on_sigusr1, SIGUSR1)) < 0)
		return rc;
	uv_unref((uv_handle_t *)&m->shutdown_timer);
	return poolwatch_start(m);
}

/* Every worker's socket for every listening address, made here before any
 * worker runs: the first binds the configured address (port 0 picks one),
 * the others join it with SO_REUSEPORT. fds[w * n_addrs + i].
 * @return 0 or a negative error, logged. */
static int addrs_open(struct proxy_main *m, const struct conf *conf, int *fds)
{
	uint64_t keepalive_ms = conf->server.tcp_keepalive_ms;
	struct lsock_opts opts = listen_opts(m, keepalive_ms);

	for (size_t i = 0; i < m->n_addrs; i++) {
		const struct conf_listen *cl = &conf->server.listens[i];
		struct listen_addr *la = &m->addrs[i];
		socklen_t len = sizeof la->bound;
		char want[64];
		int fd = -1;

		la->source_same = cl->source_same;
		la->line = cl->line;
		la->conf_addr = cl->addr;
		if (cl->pool && !(la->pool = strdup(cl->pool)))
			return -ENOMEM;
		for (unsigned w = 0; w < m->n_workers; w++) {
			const struct sockaddr_storage *at = w ? &la->bound : &cl->addr;
			fd = fds[w * m->n_addrs + i] =
			    lsock_open((const struct sockaddr *)at, &opts);
			if (fd < 0)
				break;
			if (w == 0 && getsockname(fd, (struct sockaddr *)&la->bound, &len) < 0) {
				fd = -errno;
				break;
			}
		}
		if (fd >= 0) {
			conf_addr_str((const struct sockaddr *)&la->bound, la->bound_str,
				      sizeof la->bound_str);
			log_info("server", "listening addr=%s pool=%s%s", la->bound_str,
				 addr_pool(m->gen, la), la->source_same ? " source=same" : "");
			continue;
		}
		/* The embedded default also offers [::1]; a host or container
		 * without IPv6 should still get a working proxy on 127.0.0.1. */
		if (strcmp(conf->path, "<default>") == 0 && cl->addr.ss_family == AF_INET6 &&
		    (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT)) {
			log_warn("server", "no IPv6 loopback here: serving IPv4 only");
			la->absent = true;
			continue;
		}
		conf_addr_str((const struct sockaddr *)&cl->addr, want, sizeof want);
		log_error("server", "cannot listen addr=%s line=%u error=\"%s\"", want, cl->line,
			  uv_strerror(fd));
		return fd;
	}
	return 0;
}

/* Worker px starts serving its row of sockets. @return 0 or a libuv error:
 * then what it opened is closing. */
static int worker_listen(struct proxy *px, int *fds)
{
	uint64_t keepalive_ms = px->gen->conf->server.tcp_keepalive_ms;
	int rc = 0;

	for (size_t i = 0; i < px->n_listeners; i++) {
		struct listener *l = &px->listeners[i];
		int fd = fds[i];

		fds[i] = -1;
		if (fd < 0 || rc < 0) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		rc = listener_start(px, l, fd, keepalive_ms, false);
		if (rc < 0)
			log_error("server", "cannot listen addr=%s line=%u error=\"%s\"",
				  l->bound_str, l->la->line, uv_strerror(rc));
	}
	/* After the listeners: libuv has its spare descriptor by now. */
	if (rc == 0)
		emfile_watch_start(px);
	if (rc < 0) {
		px->stopping = true; /* no reopening from the close callbacks */
		listeners_close(px);
	}
	return rc;
}

static int on_worker_start(struct worker *w, void *ctx)
{
	struct proxy_main *m = ctx;
	struct proxy *px = &m->px[worker_index(w)];

	px->loop = worker_loop(w);
	return worker_listen(px, &m->fds[worker_index(w) * m->n_addrs]);
}

static void on_worker_command(struct worker *w, unsigned cmds, void *ctx)
{
	struct proxy_main *m = ctx;

	worker_command(&m->px[worker_index(w)], cmds);
}

static const struct workers_ops worker_ops = {
    .start = on_worker_start,
    .command = on_worker_command,
    .done = on_workers_done,
};

/* A worker's password-check queue: it lives as long as the worker, so a
 * reload keeps checks in flight. The process's caps are shared out over
 * the workers (at least one each): crypt() runs in libuv's threadpool, one
 * for the whole process, which DNS lookups need too. @return 0 or -ENOMEM. */
static int auth_queue_new(struct proxy *px)
{
	unsigned n = px->main->n_workers;
	unsigned running = AUTHQ_RUNNING / n ? AUTHQ_RUNNING / n : 1;
	unsigned per_client = AUTHQ_PER_CLIENT / n ? AUTHQ_PER_CLIENT / n : 1;
	unsigned total = AUTHQ_TOTAL / n;
	struct authq_limits lim = {running, per_client, total};

	if (lim.total < lim.running)
		lim.total = lim.running;
	if (lim.total < lim.per_client)
		lim.total = lim.per_client;
	return authq_new(&lim, &px->authq);
}

/* The failure throttle is the process's: a client gains nothing by
 * spreading its tries over the workers. @return 0 or -ENOMEM. */
static int auth_throttle_new(struct proxy_main *m)
{
	uint64_t seed = uv_hrtime();

	/* A throttle slot nobody can aim at; the clock will do without. */
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
		seed ^= (uint64_t)getpid() << 32;
	return authq_throttle_new(4096, seed, &m->auth_throttle);
}

/* Per-worker state, before any worker runs. @return 0 or -ENOMEM. */
static int workers_init(struct proxy_main *m)
{
	m->px = calloc(m->n_workers, sizeof *m->px);
	if (!m->px)
		return -ENOMEM;
	for (unsigned i = 0; i < m->n_workers; i++) {
		struct proxy *px = &m->px[i];

		px->main = m;
		px->index = i;
		px->loop = m->loop;
		/* Ids i+1, i+1+n, ...: unique across workers, 1, 2, 3 with one. */
		px->next_session_id = (uint64_t)i + 1 - m->n_workers;
		px->gen = m->gen;
		proxy_gen_ref(px->gen);
		if (auth_queue_new(px) < 0)
			return -ENOMEM;
		px->n_listeners = m->n_addrs;
		px->listeners = calloc(m->n_addrs ? m->n_addrs : 1, sizeof *px->listeners);
		if (!px->listeners)
			return -ENOMEM;
		for (size_t j = 0; j < m->n_addrs; j++) {
			struct listener *l = &px->listeners[j];
			l->px = px;
			l->la = &m->addrs[j];
			l->pool = m->addrs[j].pool;
			l->source_same = m->addrs[j].source_same;
			l->bound_str = m->addrs[j].bound_str;
		}
	}
	return 0;
}

/* Listeners, admin, privileges, workers: what a restart (not a reload)
 * changes. @return 0 or a negative error, logged. */
static int proxy_open(struct proxy_main *m, const struct conf *conf)
{
	size_t n_fds;
	int rc;

	m->boot_admin_enabled = conf->server.admin_enabled;
	m->boot_admin_listen = conf->server.admin_listen;
	m->boot_workers = conf->server.workers;
	if (conf->server.user && !(m->boot_user = strdup(conf->server.user)))
		log_error("main", "out of memory");
	m->n_addrs = conf->server.n_listens;
	m->addrs = calloc(m->n_addrs ? m->n_addrs : 1, sizeof *m->addrs);
	n_fds = (size_t)m->n_workers * m->n_addrs;
	m->fds = malloc((n_fds ? n_fds : 1) * sizeof *m->fds);
	if (!m->addrs || !m->fds) {
		log_error("main", "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n_fds; i++)
		m->fds[i] = -1;
	rc = addrs_open(m, conf, m->fds);
	if (rc == 0 && (rc = workers_init(m)) < 0)
		log_error("main", "out of memory");
	/* One WARN throttle for the process, on the main loop (px[0] is still
	 * on it here), shared by every worker. */
	if (rc == 0 && throttle_start(&m->px[0]) < 0)
		log_warn("main", "out of memory: repeated warnings are not rate-limited");
	for (unsigned i = 1; rc == 0 && i < m->n_workers; i++)
		m->px[i].throttle = m->px[0].throttle;
	if (rc == 0 && conf->server.admin_enabled)
		rc = admin_start(m, (const struct sockaddr *)&conf->server.admin_listen, &m->admin);
	/* The workers' destination policy reads it: fixed before they start. */
	if (rc == 0 && m->admin && admin_bound(m->admin, &m->admin_bound) == 0)
		m->has_admin_bound = true;
	/* Before any worker thread exists: setuid() then concerns one thread. */
	if (rc == 0 && conf->server.user)
		rc = drop_privileges(conf->server.user, m->reload_path);
	/* Before any worker serves: the prefix route probes (blocking, at most
	 * a second each) and the address watch with the start-up check, whose
	 * pool watcher must be registered before other threads use the pools. */
	if (rc == 0) {
		prefixes_check_at_start(m);
		if (health_start(m, &m->health) < 0)
			log_error("main", "out of memory: no address watch and no upstream checks");
	}
	if (rc == 0 && m->n_workers == 1)
		rc = worker_listen(&m->px[0], m->fds);
	else if (rc == 0 &&
		 (rc = workers_start(m->loop, m->n_workers, &worker_ops, m, &m->threads)) < 0)
		log_error("main", "cannot start workers=%u error=\"%s\"", m->n_workers,
			  uv_strerror(rc));
	for (size_t i = 0; i < n_fds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	free(m->fds);
	m->fds = NULL;
	return rc;
}

static void proxy_free(struct proxy_main *m)
{
	for (unsigned i = 0; m->px && i < m->n_workers; i++) {
		proxy_gen_unref(m->px[i].gen);
		authq_free(m->px[i].authq);
		free(m->px[i].listeners);
		session_slabs_destroy(&m->px[i]);
	}
	authq_throttle_free(m->auth_throttle);
	free(m->px);
	proxy_gen_unref(m->gen);
	for (size_t i = 0; m->addrs && i < m->n_addrs; i++)
		free(m->addrs[i].pool);
	free(m->addrs);
	free(m->boot_user);
	clients_destroy(&m->clients);
	poolsync_destroy(&m->sync);
	uv_mutex_destroy(&m->listen_mu);
	uv_mutex_destroy(&m->auth_mu);
	uv_mutex_destroy(&m->gone_mu);
	uv_mutex_destroy(&m->gen_mu);
	free(m);
}

/* Locks and tables shared by the workers. @return 0 or a negative error. */
static int proxy_shared_init(struct proxy_main *m)
{
	int rc;

	if ((rc = uv_mutex_init(&m->gen_mu)) < 0)
		return rc;
	if ((rc = uv_mutex_init(&m->listen_mu)) < 0)
		return rc;
	if ((rc = uv_mutex_init(&m->auth_mu)) < 0)
		return rc;
	if ((rc = uv_mutex_init(&m->gone_mu)) < 0)
		return rc;
	if ((rc = auth_throttle_new(m)) < 0)
		return rc;
	if ((rc = poolsync_init(&m->sync, m->n_workers > 1)) < 0)
		return rc;
	return clients_init(&m->clients, m->n_workers > 1);
}

int proxy_run(struct conf *conf, const char *conf_path)
{
	struct proxy_main *m;
	char err[CONF_ERR_MAX] = "";
	int rc;

	rc = log_configure(&conf->server, err, sizeof err);
	if (rc < 0) {
		log_error("main", "configuration rejected: %s", err);
		conf_free(conf);
		return 1;
	}
	for (size_t i = 0; i < conf->n_warnings; i++)
		log_warn("conf", "%s", conf->warnings[i]);
	signal(SIGPIPE, SIG_IGN);

	m = calloc(1, sizeof *m);
	if (!m) {
		conf_free(conf);
		return 1;
	}
	m->started_wall_ms = (uint64_t)time(NULL) * 1000;
	m->reload_path = conf_path;
	m->n_workers = workers_wanted(conf);
	atomic_init(&m->n_sessions, 0);
	if ((rc = proxy_shared_init(m)) < 0) {
		log_error("main", "cannot set up locks error=\"%s\"", strerror(-rc));
		conf_free(conf);
		return 1;
	}
	rc = proxy_gen_new(conf, NULL, &m->sync, &m->gen, err, sizeof err);
	if (rc < 0) {
		log_error("main", "configuration rejected: %s", err);
		free(m);
		return 1;
	}
	rc = proxy_handles_init(m);
	if (rc < 0) {
		log_error("main", "cannot set up the event loop error=\"%s\"", uv_strerror(rc));
		return 1;
	}
	if (proxy_open(m, conf) < 0) {
		m->exit_code = 1;
		m->stopping = true;
		if (!m->threads && m->px) {
			m->px[0].stopping = true;
			listeners_close(&m->px[0]);
		}
		admin_stop(m->admin);
		m->admin = NULL;
		health_stop(m->health);
		m->health = NULL;
		main_maybe_finish(m);
	} else {
		confwatch_set(&m->confwatch, m->loop, m->reload_path, conf->server.reload_on_change,
			      on_conf_changed, m);
		log_info("main", "ready pid=%d listeners=%zu sources=%zu pools=%zu workers=%u",
			 (int)getpid(), m->n_addrs, conf->n_sources, conf->n_pools, m->n_workers);
		notify_ready();
	}

	uv_run(m->loop, UV_RUN_DEFAULT);

	rc = m->exit_code;
	if (m->threads) {
		for (unsigned i = 0; i < m->n_workers; i++)
			if (worker_loop_status(workers_at(m->threads, i)) != 0) {
				log_error("main",
					  "worker=%u: event loop still had open handles at exit",
					  i);
				rc = rc ? rc : 1;
			}
		workers_free(m->threads);
	}
	if (uv_loop_close(m->loop) != 0) {
		log_error("main", "event loop still had open handles at exit");
		rc = rc ? rc : 1;
	}
	proxy_free(m);
	if (rc == 0)
		log_info("main", "stopped");
	return rc;
}

const double proxy_hist_bounds_ms[PROXY_HIST_BUCKETS] = {1,   2.5, 5,	10,   25,   50,
							 100, 250, 500, 1000, 2500, 10000};

void proxy_hist_observe(struct proxy_hist *h, double ms)
{
	size_t i = 0;

	while (i < PROXY_HIST_BUCKETS && ms > proxy_hist_bounds_ms[i])
		i++;
	stat_add(&h->buckets[i], 1);
	stat_add(&h->count, 1);
	stat_add_double(&h->sum_ms, ms);
}

static void hist_add(struct proxy_hist *sum, const struct proxy_hist *one)
{
	for (size_t i = 0; i <= PROXY_HIST_BUCKETS; i++)
		sum->buckets[i] += stat_get(&one->buckets[i]);
	sum->count += stat_get(&one->count);
	sum->sum_ms += stat_get_double(&one->sum_ms);
}

void proxy_stats_add(struct proxy_stats *sum, const struct proxy_stats *one)
{
	sum->accepted += stat_get(&one->accepted);
	sum->active += stat_get(&one->active);
	sum->relaying += stat_get(&one->relaying);
	for (size_t r = 0; r < PROXY_RESULT_COUNT; r++)
		sum->total[r] += stat_get(&one->total[r]);
	sum->bytes_up += stat_get(&one->bytes_up);
	sum->bytes_down += stat_get(&one->bytes_down);
	hist_add(&sum->handshake, &one->handshake);
	hist_add(&sum->connect, &one->connect);
	sum->stalled += stat_get(&one->stalled);
	for (size_t r = 0; r < PROXY_REFUSED_COUNT; r++)
		sum->refused[r] += stat_get(&one->refused[r]);
	sum->accept_errors += stat_get(&one->accept_errors);
	sum->accept_emfile += stat_get(&one->accept_emfile);
	sum->dest_denied += stat_get(&one->dest_denied);
	sum->auth_delayed += stat_get(&one->auth_delayed);
	sum->auth_queue_full += stat_get(&one->auth_queue_full);
	sum->reloads_ok += stat_get(&one->reloads_ok);
	sum->reloads_failed += stat_get(&one->reloads_failed);
	if (stat_get(&one->reload_ok_wall_ms) > sum->reload_ok_wall_ms)
		sum->reload_ok_wall_ms = stat_get(&one->reload_ok_wall_ms);
}

const char *proxy_result_name(enum proxy_result r)
{
	static const char *const names[PROXY_RESULT_COUNT] = {
	    "ok",	   "refused",	  "handshake", "auth",
	    "not_allowed", "destination", "exhausted", "error",
	};

	return r < PROXY_RESULT_COUNT ? names[r] : "error";
}
