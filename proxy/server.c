/* server: the process: listeners (and their refuse-mode pause), signals,
 * reload, the prefix route probe, start and shutdown. */
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
#include "notify.h"
#include "pool.h"
#include "proxy.h"
#include "throttle.h"

static void on_connection(uv_stream_t *server, int status)
{
	struct listener *l = container_of((uv_tcp_t *)server, struct listener, tcp);

	if (status < 0) {
		proxy_accept_failed(l->px, l->bound_str, status);
		if (status == UV_EMFILE || status == UV_ENFILE)
			emfile_accept_error(l->px);
		return;
	}
	session_accept(l);
}

static void on_listener_closed(uv_handle_t *h)
{
	struct listener *l = container_of((uv_tcp_t *)h, struct listener, tcp);

	l->px->n_listeners_open--;
	l->closing = false;
	if (l->paused)
		proxy_listeners_resume(l->px);
}

static void listener_close(struct listener *l)
{
	if (!l->open)
		return;
	l->open = false;
	l->closing = true;
	uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}

static int set_int(int fd, int level, int opt, int value)
{
	return setsockopt(fd, level, opt, &value, sizeof value) < 0 ? -errno : 0;
}

/* A bound, non-blocking listening socket, before listen(): our own, since
 * TCP_FASTOPEN must be set before listen() and uv_tcp_bind() + uv_listen()
 * leave no room for it. @return the fd or -errno. */
static int listen_socket(const struct sockaddr_storage *addr, uint64_t keepalive_ms)
{
	int family = addr->ss_family, rc;
	socklen_t len =
	    family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return -errno;
	if ((rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1)) < 0 ||
	    (family == AF_INET6 && (rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) < 0))
		goto fail;
	if (bind(fd, (const struct sockaddr *)addr, len) < 0) {
		rc = -errno;
		goto fail;
	}
	/* Exim may send its greeting as Fast Open data; a kernel without TFO
	 * support refuses the option, and then clients just do without. */
	if (set_int(fd, IPPROTO_TCP, TCP_FASTOPEN, 256) < 0)
		log_debug("server", "TCP_FASTOPEN not available error=\"%s\"", strerror(errno));
	/* Accepted sockets inherit these, which saves three system calls on
	 * every connection. */
	if ((rc = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1)) < 0 ||
	    (keepalive_ms &&
	     ((rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1)) < 0 ||
	      (rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)(keepalive_ms / 1000 ?: 1))) < 0)))
		goto fail;
	return fd;
fail:
	close(fd);
	return rc;
}

/* Open a listening socket on `addr`; `line` names it in errors, `reopen`
 * says it is back after on_pool_exhausted = refuse. */
static int listener_bind(struct listener *l, const struct sockaddr_storage *addr, unsigned line,
			 bool reopen)
{
	struct proxy *px = l->px;
	char err[CONF_ERR_MAX];
	int fd, rc, len;

	rc = uv_tcp_init(px->loop, &l->tcp);
	if (rc < 0)
		return rc;
	px->n_listeners_open++;
	l->open = true;
	l->keepalive_ms = px->gen->conf->server.tcp_keepalive_ms;
	fd = rc = listen_socket(addr, l->keepalive_ms);
	if (rc < 0)
		goto fail;
	if ((rc = uv_tcp_open(&l->tcp, fd)) < 0) {
		close(fd);
		goto fail;
	}
	len = sizeof l->bound;
	if ((rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection)) < 0 ||
	    (rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&l->bound, &len)) < 0)
		goto fail;
	conf_addr_str((const struct sockaddr *)&l->bound, l->bound_str, sizeof l->bound_str);
	log_info("server", "%s addr=%s pool=%s%s", reopen ? "listening again" : "listening",
		 l->bound_str, l->pool ? l->pool : px->gen->conf->server.default_pool,
		 l->source_same ? " source=same" : "");
	return 0;
fail:
	conf_addr_str((const struct sockaddr *)addr, err, sizeof err);
	log_error("server", "cannot listen addr=%s line=%u error=\"%s\"", err, line,
		  uv_strerror(rc));
	listener_close(l);
	return rc;
}

static int listener_open(struct proxy *px, struct listener *l, const struct conf_listen *cl)
{
	l->px = px;
	l->source_same = cl->source_same;
	l->conf_addr = cl->addr;
	if (cl->pool && !(l->pool = strdup(cl->pool)))
		return UV_ENOMEM;
	return listener_bind(l, &cl->addr, cl->line, false);
}

static void listeners_close(struct proxy *px)
{
	for (size_t i = 0; i < px->n_listeners; i++)
		listener_close(&px->listeners[i]);
}

static const char *listener_pool(const struct proxy *px, const struct listener *l)
{
	return l->pool ? l->pool : px->gen->conf->server.default_pool;
}

void proxy_pool_exhausted(struct proxy *px, const char *name)
{
	if (px->gen->conf->server.on_pool_exhausted != CONF_POOL_EXHAUSTED_REFUSE)
		return;
	for (size_t i = 0; i < px->n_listeners; i++) {
		struct listener *l = &px->listeners[i];
		if (!l->open || l->source_same || strcmp(listener_pool(px, l), name) != 0)
			continue;
		log_warn("server",
			 "pool %s exhausted: listener addr=%s closed until a source returns", name,
			 l->bound_str);
		l->paused = true;
		listener_close(l);
	}
}

/* Reopen paused listeners whose pool has an eligible source again, on the
 * port they had, so clients find them where they were. */
void proxy_listeners_resume(struct proxy *px)
{
	for (size_t i = 0; i < px->n_listeners && !px->stopping; i++) {
		struct listener *l = &px->listeners[i];
		struct pool *pool;

		if (!l->paused || l->open || l->closing)
			continue;
		pool = pool_set_pool(px->gen->pools, listener_pool(px, l));
		if (pool && pool_count_eligible(pool, POOL_FAMILY_ANY) == 0)
			continue;
		l->paused = false;
		if (listener_bind(l, &l->bound, 0, true) < 0)
			l->paused = true; /* try again at the next pool change */
	}
}

/* A prefix the host does not route locally would bind fine (FREEBIND) and
 * then fail every connection: such a source is taken out of rotation. The
 * probe connects and may block for a second, so it runs in the threadpool
 * and holds the generation whose conf it reads. */
struct prefix_probe {
	uv_work_t work;
	struct proxy *px;
	struct proxy_gen *gen;
	size_t idx;
	int rc;
};

static void on_prefix_probe(uv_work_t *w)
{
	struct prefix_probe *p = container_of(w, struct prefix_probe, work);

	p->rc = egress_probe_prefix(&p->gen->conf->sources[p->idx]);
}

static void prefix_verdict(struct proxy *px, const struct conf_source *cs, struct pool_source *src,
			   int rc)
{
	uint64_t now = uv_now(px->loop);
	struct pool_source_info info;

	if (rc < 0) {
		log_warn("server",
			 "prefix source=%s is not routed to this host error=\"%s\"; add "
			 "`ip route add local PREFIX dev lo` (ip -6 for IPv6) and reload",
			 cs->name, strerror(-rc));
		if (src)
			pool_source_suspend(src, UINT64_MAX, now);
		return;
	}
	log_info("server", "prefix source=%s is routed locally", cs->name);
	if (!src)
		return;
	/* Fixed since a failed check at start or an earlier reload. */
	pool_source_get_info(src, now, &info);
	if (info.state == POOL_STATE_SUSPENDED && info.reason == POOL_REASON_MANUAL &&
	    info.suspended_until_ms == UINT64_MAX)
		pool_source_resume(src, now);
}

static void on_prefix_probed(uv_work_t *w, int status)
{
	struct prefix_probe *p = container_of(w, struct prefix_probe, work);

	/* A later reload probes its own generation; this answer is stale. */
	if (status == 0 && p->gen == p->px->gen && !p->px->stopping)
		prefix_verdict(p->px, &p->gen->conf->sources[p->idx],
			       gen_pool_source(p->gen, p->idx), p->rc);
	proxy_gen_unref(p->gen);
	free(p);
}

/* At start nothing is relayed yet, and the first request must not find an
 * unrouted prefix still in rotation: the probes run before the listeners
 * serve, on the loop. */
static void prefixes_check_at_start(struct proxy *px)
{
	const struct conf *conf = px->gen->conf;

	for (size_t i = 0; i < conf->n_sources; i++)
		if (conf->sources[i].kind == CONF_SOURCE_PREFIX)
			prefix_verdict(px, &conf->sources[i], gen_pool_source(px->gen, i),
				       egress_probe_prefix(&conf->sources[i]));
}

/* On reload live relays must not wait: the probes run in the threadpool. */
static void prefixes_check(struct proxy *px)
{
	const struct conf *conf = px->gen->conf;

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
		*p = (struct prefix_probe){.px = px, .gen = px->gen, .idx = i};
		rc = uv_queue_work(px->loop, &p->work, on_prefix_probe, on_prefix_probed);
		if (rc < 0) {
			log_error("server", "cannot probe prefix source=%s error=\"%s\"",
				  conf->sources[i].name, uv_strerror(rc));
			free(p);
			continue;
		}
		px->gen->refs++;
	}
}

static void maybe_finish(struct proxy *px)
{
	if (!px->stopping || px->n_sessions > 0)
		return;
	uv_close((uv_handle_t *)&px->sig_term, NULL);
	uv_close((uv_handle_t *)&px->sig_int, NULL);
	uv_close((uv_handle_t *)&px->sig_hup, NULL);
	uv_close((uv_handle_t *)&px->sig_usr1, NULL);
	throttle_stop(px);
	emfile_watch_stop(px);
	uv_close((uv_handle_t *)&px->expire_timer, NULL);
	uv_close((uv_handle_t *)&px->shutdown_timer, NULL);
	poolwatch_stop(px);
}

void proxy_session_gone(struct proxy *px)
{
	maybe_finish(px);
}

static void on_shutdown_timer(uv_timer_t *t)
{
	struct proxy *px = container_of(t, struct proxy, shutdown_timer);

	log_warn("server", "shutdown timeout: closing live connections count=%zu", px->n_sessions);
	session_close_all(px);
}

static void begin_shutdown(struct proxy *px, int signum)
{
	if (px->stopping) {
		/* A second signal means: do not wait any longer. */
		session_close_all(px);
		return;
	}
	px->stopping = true;
	notify_stopping();
	confwatch_set(&px->confwatch, px->loop, NULL, false, NULL, NULL);
	log_info("server", "stopping signal=%s live=%zu drain_limit_ms=%llu", strsignal(signum),
		 px->n_sessions, (unsigned long long)px->gen->conf->server.shutdown_timeout_ms);
	listeners_close(px);
	admin_stop(px->admin);
	px->admin = NULL;
	health_stop(px->health);
	px->health = NULL;
	poolwatch_stop(px);
	if (px->n_sessions > 0)
		uv_timer_start(&px->shutdown_timer, on_shutdown_timer,
			       px->gen->conf->server.shutdown_timeout_ms, 0);
	maybe_finish(px);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct proxy *px = s->data;

	begin_shutdown(px, signum);
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
static bool restart_settings_same(const struct proxy *px, const struct conf_server *b)
{
	if (px->n_listeners != b->n_listens || px->boot_admin_enabled != b->admin_enabled ||
	    (b->admin_enabled && !addr_same(&px->boot_admin_listen, &b->admin_listen)) ||
	    !str_same(px->boot_user, b->user) || px->boot_workers != b->workers)
		return false;
	for (size_t i = 0; i < b->n_listens; i++) {
		const struct listener *l = &px->listeners[i];
		if (!addr_same(&l->conf_addr, &b->listens[i].addr) ||
		    !str_same(l->pool, b->listens[i].pool) ||
		    l->source_same != b->listens[i].source_same)
			return false;
	}
	return true;
}

static void on_conf_changed(void *arg);

static void on_sighup(uv_signal_t *s, int signum)
{
	struct proxy *px = s->data;
	struct conf *conf = NULL;
	struct proxy_gen *gen = NULL;
	char err[CONF_ERR_MAX] = "";
	int rc;

	(void)signum;
	if (!px->reload_path) {
		log_warn("server",
			 "SIGHUP ignored: running on the embedded default, no file to reload");
		return;
	}
	notify_reloading();
	rc = conf_load_file(px->reload_path, &conf, err, sizeof err);
	if (rc == 0)
		rc = proxy_gen_new(conf, px->gen, &gen, err, sizeof err);
	if (rc == 0) {
		rc = log_configure(&conf->server, err, sizeof err);
		if (rc < 0)
			proxy_gen_unref(gen); /* frees conf with it */
	}
	if (rc < 0) {
		log_error("server", "reload rejected, keeping the running configuration: %s",
			  err[0] ? err : strerror(-rc));
		px->stats.reloads_failed++;
		notify_ready();
		return;
	}
	for (size_t i = 0; i < conf->n_warnings; i++)
		log_warn("conf", "%s", conf->warnings[i]);
	/* Listeners stay as they are: rebinding sockets under live clients is
	 * not something a reload should do behind the operator's back. */
	if (!restart_settings_same(px, &conf->server))
		log_warn("server", "reload: listen, admin_listen, user and workers changes take "
				   "effect at the next restart");
	proxy_gen_unref(px->gen);
	px->gen = gen;
	px->stats.reloads_ok++;
	px->stats.reload_ok_wall_ms = (uint64_t)time(NULL) * 1000;
	prefixes_check(px);
	poolwatch_kick(px);
	health_reload(px->health);
	confwatch_set(&px->confwatch, px->loop, px->reload_path, conf->server.reload_on_change,
		      on_conf_changed, px);
	log_info("server", "reloaded path=%s sources=%zu pools=%zu", px->reload_path,
		 conf->n_sources, conf->n_pools);
	notify_ready();
}

static void on_conf_changed(void *arg)
{
	struct proxy *px = arg;

	log_info("server", "configuration file changed path=%s: reloading", px->reload_path);
	on_sighup(&px->sig_hup, SIGHUP);
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

/* The loop and the process-wide handles. A failure here is fatal: the
 * process exits without unwinding what was set up.
 * @return 0 or a libuv error. */
static int proxy_handles_init(struct proxy *px)
{
	int rc = uv_loop_init(&px->loop_storage);

	if (rc < 0)
		return rc;
	px->loop = &px->loop_storage;
	px->sig_term.data = px->sig_int.data = px->sig_hup.data = px->sig_usr1.data = px;
	if ((rc = uv_timer_init(px->loop, &px->expire_timer)) < 0 ||
	    (rc = uv_timer_init(px->loop, &px->shutdown_timer)) < 0 ||
	    (rc = uv_signal_init(px->loop, &px->sig_term)) < 0 ||
	    (rc = uv_signal_init(px->loop, &px->sig_int)) < 0 ||
	    (rc = uv_signal_init(px->loop, &px->sig_hup)) < 0 ||
	    (rc = uv_signal_init(px->loop, &px->sig_usr1)) < 0 ||
	    (rc = uv_signal_start(&px->sig_term, on_signal, SIGTERM)) < 0 ||
	    (rc = uv_signal_start(&px->sig_int, on_signal, SIGINT)) < 0 ||
	    (rc = uv_signal_start(&px->sig_hup, on_sighup, SIGHUP)) < 0 ||
	    (rc = uv_signal_start(&px->sig_usr1, on_sigusr1, SIGUSR1)) < 0)
		return rc;
	uv_unref((uv_handle_t *)&px->shutdown_timer);
	if (throttle_start(px) < 0)
		log_warn("main", "out of memory: repeated warnings are not rate-limited");
	return poolwatch_start(px);
}

/* Listeners, admin, privileges: what a restart (not a reload) changes.
 * @return 0 or a negative error, logged. */
static int proxy_open(struct proxy *px, const struct conf *conf)
{
	int rc;

	px->boot_admin_enabled = conf->server.admin_enabled;
	px->boot_admin_listen = conf->server.admin_listen;
	px->boot_workers = conf->server.workers;
	if (conf->server.user && !(px->boot_user = strdup(conf->server.user)))
		log_error("main", "out of memory");
	px->n_listeners = conf->server.n_listens;
	px->listeners = calloc(px->n_listeners, sizeof *px->listeners);
	rc = px->listeners ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < px->n_listeners; i++) {
		const struct conf_listen *cl = &conf->server.listens[i];
		rc = listener_open(px, &px->listeners[i], cl);
		/* The embedded default also offers [::1]; a host or container
		 * without IPv6 should still get a working proxy on 127.0.0.1. */
		if (rc < 0 && strcmp(conf->path, "<default>") == 0 &&
		    cl->addr.ss_family == AF_INET6 &&
		    (rc == UV_EADDRNOTAVAIL || rc == UV_EAFNOSUPPORT)) {
			log_warn("server", "no IPv6 loopback here: serving IPv4 only");
			rc = 0;
		}
	}
	if (rc == 0 && conf->server.admin_enabled)
		rc = admin_start(px, (const struct sockaddr *)&conf->server.admin_listen,
				 &px->admin);
	if (rc == 0 && conf->server.user)
		rc = drop_privileges(conf->server.user, px->reload_path);
	return rc;
}

/* The password-check queue and the failure throttle live as long as the
 * process: a reload keeps checks in flight and failures remembered. */
static int auth_guard_init(struct proxy *px)
{
	const struct authq_limits lim = {AUTHQ_RUNNING, AUTHQ_PER_CLIENT, AUTHQ_TOTAL};
	uint64_t seed = uv_hrtime();
	int rc = authq_new(&lim, &px->authq);

	/* A throttle slot nobody can aim at; the clock will do without. */
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
		seed ^= (uint64_t)getpid() << 32;

	return rc < 0 ? rc : authq_throttle_new(4096, seed, &px->auth_throttle);
}

static void proxy_free(struct proxy *px)
{
	proxy_gen_unref(px->gen);
	authq_free(px->authq);
	authq_throttle_free(px->auth_throttle);
	for (size_t i = 0; i < px->n_listeners; i++)
		free(px->listeners[i].pool);
	free(px->listeners);
	free(px->boot_user);
	free(px->clients);
	free(px);
}

int proxy_run(struct conf *conf, const char *conf_path)
{
	struct proxy *px;
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

	px = calloc(1, sizeof *px);
	if (!px) {
		conf_free(conf);
		return 1;
	}
	px->started_wall_ms = (uint64_t)time(NULL) * 1000;
	px->reload_path = conf_path;
	rc = proxy_gen_new(conf, NULL, &px->gen, err, sizeof err);
	if (rc < 0) {
		log_error("main", "configuration rejected: %s", err);
		free(px);
		return 1;
	}
	rc = auth_guard_init(px);
	if (rc < 0) {
		log_error("main", "out of memory");
		proxy_free(px);
		return 1;
	}
	rc = proxy_handles_init(px);
	if (rc < 0) {
		log_error("main", "cannot set up the event loop error=\"%s\"", uv_strerror(rc));
		return 1;
	}
	if (proxy_open(px, conf) < 0) {
		px->exit_code = 1;
		px->stopping = true;
		listeners_close(px);
		admin_stop(px->admin);
		px->admin = NULL;
		maybe_finish(px);
	} else {
		prefixes_check_at_start(px);
		if (health_start(px, &px->health) < 0)
			log_error("main", "out of memory: no address watch and no upstream checks");
		/* After the listeners: libuv has its spare descriptor by now. */
		emfile_watch_start(px);
		confwatch_set(&px->confwatch, px->loop, px->reload_path,
			      conf->server.reload_on_change, on_conf_changed, px);
		if (conf->server.workers > 1)
			log_info("main",
				 "workers=%u: this version serves every connection from one "
				 "event loop",
				 conf->server.workers);
		log_info("main", "ready pid=%d listeners=%zu sources=%zu pools=%zu", (int)getpid(),
			 px->n_listeners, conf->n_sources, conf->n_pools);
		notify_ready();
	}

	uv_run(px->loop, UV_RUN_DEFAULT);

	rc = px->exit_code;
	if (uv_loop_close(px->loop) != 0) {
		log_error("main", "event loop still had open handles at exit");
		rc = rc ? rc : 1;
	}
	proxy_free(px);
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
	h->buckets[i]++;
	h->count++;
	h->sum_ms += ms;
}

const char *proxy_result_name(enum proxy_result r)
{
	static const char *const names[PROXY_RESULT_COUNT] = {
	    "ok",	   "refused",	  "handshake", "auth",
	    "not_allowed", "destination", "exhausted", "error",
	};

	return r < PROXY_RESULT_COUNT ? names[r] : "error";
}
