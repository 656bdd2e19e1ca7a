/* conf_dump: the resolved configuration as `sockpool --check` prints it. */
#include <stdio.h>
#include <sys/socket.h>

#include "internal.h"

static const char *strategy_name(enum conf_strategy s)
{
	switch (s) {
	case CONF_STRATEGY_HASH:
		return "hash";
	case CONF_STRATEGY_FAILOVER:
		return "failover";
	default:
		return "round-robin";
	}
}

static const char *hash_key_name(enum conf_hash_key k)
{
	switch (k) {
	case CONF_HASH_KEY_CLIENT:
		return "client";
	case CONF_HASH_KEY_USERNAME:
		return "username";
	default:
		return "destination";
	}
}

static void dump_cidrs(FILE *out, const char *key, const struct conf_cidr_list *list)
{
	char buf[64];

	fprintf(out, "%s", key);
	if (!list->count)
		fprintf(out, " none");
	for (size_t i = 0; i < list->count; i++)
		fprintf(out, "%s%s", i ? ", " : " ",
			conf__cidr_str(&list->items[i], buf, sizeof(buf)));
	fprintf(out, "\n");
}

static void dump_rule(FILE *out, const char *name, const struct conf_suspend_rule *r)
{
	char t[48], d[32];

	if (!r->enabled)
		fprintf(out, " %s=off", name);
	else
		fprintf(out, " %s=%s for %s", name, conf__threshold_str(&r->trigger, t, sizeof(t)),
			conf__duration_str(r->duration_ms, d, sizeof(d)));
}

static void dump_source(FILE *out, const struct conf_source *s)
{
	char a[64], t[48];

	fprintf(out, "source %s", s->name);
	switch (s->kind) {
	case CONF_SOURCE_DEFAULT_ROUTE:
		fprintf(out, " default-route");
		break;
	case CONF_SOURCE_ADDRESS:
		fprintf(out, " address=%s",
			conf_addr_str((const struct sockaddr *)&s->addr, a, sizeof(a)));
		break;
	case CONF_SOURCE_PREFIX:
		fprintf(out, " prefix=%s prefix_pick=%s", conf__cidr_str(&s->prefix, a, sizeof(a)),
			s->prefix_pick == CONF_PREFIX_PICK_RANDOM ? "random" : "hash");
		break;
	case CONF_SOURCE_PROXY:
		fprintf(out, " socks5_proxy_server=%s",
			conf_addr_str((const struct sockaddr *)&s->proxy_server, a, sizeof(a)));
		if (s->has_proxy_source_address)
			fprintf(out, " socks5_proxy_source_address=%s",
				conf_addr_str((const struct sockaddr *)&s->proxy_source_address, a,
					      sizeof(a)));
		if (s->proxy_username)
			fprintf(out, " socks5_proxy_username=%s (password not shown)",
				s->proxy_username);
		break;
	}
	if (s->anonymous)
		fprintf(out, " (anonymous)");
	dump_rule(out, "unplumbed", &s->unplumbed);
	dump_rule(out, "proxy_unhealthy", &s->proxy_unhealthy);
	if (s->max_connections)
		fprintf(out, " max_connections=%u", (unsigned)s->max_connections);
	if (s->rate.count)
		fprintf(out, " rate=%s", conf__threshold_str(&s->rate, t, sizeof(t)));
	if (s->resume_when_plumbed)
		fprintf(out, " resume_when_plumbed=yes");
	if (s->health_check_ms)
		fprintf(out, " health_check=%s",
			conf__duration_str(s->health_check_ms, t, sizeof(t)));
	if (s->resume_when_healthy)
		fprintf(out, " resume_when_healthy=yes");
	fprintf(out, "\n");
}

void conf_dump(const struct conf *conf, FILE *out)
{
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	static const char *const targets[] = {"stderr", "syslog", "journald"};
	const struct conf_server *sv;
	char a[64], d1[32], d2[32], d3[32], d4[32];

	if (!conf || !out)
		return;
	sv = &conf->server;
	fprintf(out, "# sockpool configuration from %s\n", conf->path);
	for (size_t i = 0; i < sv->n_listens; i++) {
		const struct conf_listen *l = &sv->listens[i];
		conf_addr_str((const struct sockaddr *)&l->addr, a, sizeof(a));
		if (conf__addr_port(&l->addr) != 0)
			fprintf(out, "listen %s", a);
		else if (l->addr.ss_family == AF_INET6)
			fprintf(out, "listen [%s]:0", a); /* ephemeral port */
		else
			fprintf(out, "listen %s:0", a);
		if (l->source_same)
			fprintf(out, " source=same\n");
		else
			fprintf(out, " pool=%s\n", l->pool ? l->pool : sv->default_pool);
	}
	if (sv->admin_enabled)
		fprintf(out, "admin_listen %s\n",
			conf_addr_str((const struct sockaddr *)&sv->admin_listen, a, sizeof(a)));
	else
		fprintf(out, "admin_listen off\n");
	dump_cidrs(out, "allow", &sv->allow);
	dump_cidrs(out, "deny_destinations", &sv->deny_destinations);
	dump_cidrs(out, "allow_destinations", &sv->allow_destinations);
	fprintf(out, "auth %s\n", sv->auth == CONF_AUTH_PASSWORD ? "password" : "none");
	fprintf(out, "timeouts handshake=%s connect=%s idle=%s shutdown=%s\n",
		conf__duration_str(sv->handshake_timeout_ms, d1, sizeof(d1)),
		conf__duration_str(sv->connect_timeout_ms, d2, sizeof(d2)),
		conf__duration_str(sv->idle_timeout_ms, d3, sizeof(d3)),
		conf__duration_str(sv->shutdown_timeout_ms, d4, sizeof(d4)));
	fprintf(out, "max_connections %u per_client=%u\n", (unsigned)sv->max_connections,
		(unsigned)sv->max_connections_per_client);
	fprintf(out, "bind_unlisted %s\n",
		sv->bind_unlisted == CONF_BIND_UNLISTED_ALLOW ? "allow" : "deny");
	fprintf(out, "tcp_keepalive %s\n",
		conf__duration_str(sv->tcp_keepalive_ms, d1, sizeof(d1)));
	fprintf(out, "on_pool_exhausted %s\n",
		sv->on_pool_exhausted == CONF_POOL_EXHAUSTED_REFUSE ? "refuse" : "reply");
	fprintf(out, "log_level %s log_target %s log_timestamps %s\n", levels[sv->log_level & 3],
		targets[sv->log_target % 3],
		!sv->log_timestamps_set ? "auto"
		: sv->log_timestamps	? "on"
					: "off");
	fprintf(out, "access_log %s\n",
		sv->access_log_file ? sv->access_log_file
		: sv->access_log    ? "on"
				    : "off");
	fprintf(out, "stall_timeout %s relay %s reload_on_change %s\n",
		conf__duration_str(sv->stall_timeout_ms, d1, sizeof(d1)),
		sv->relay == CONF_RELAY_SPLICE ? "splice" : "copy",
		sv->reload_on_change ? "yes" : "no");
	if (sv->workers)
		fprintf(out, "workers %u\n", sv->workers);
	else
		fprintf(out, "workers auto\n");
	fprintf(out, "admin_token %s\n", sv->admin_token ? "set (not shown)" : "none");
	if (sv->user)
		fprintf(out, "run_as %s\n", sv->user);
	for (size_t i = 0; i < conf->n_sources; i++)
		dump_source(out, &conf->sources[i]);
	for (size_t i = 0; i < conf->n_pools; i++) {
		const struct conf_pool *p = &conf->pools[i];
		fprintf(out, "pool %s strategy=%s", p->name, strategy_name(p->strategy));
		if (p->strategy == CONF_STRATEGY_HASH)
			fprintf(out, " hash_key=%s", hash_key_name(p->hash_key));
		fprintf(out, "\n");
		for (size_t e = 0; e < p->n_entries; e++) {
			const struct conf_pool_entry *en = &p->entries[e];
			fprintf(out, "  %s weight=%u", conf->sources[en->source].name,
				(unsigned)en->weight);
			if (p->strategy == CONF_STRATEGY_FAILOVER)
				fprintf(out, " priority=%u", (unsigned)en->priority);
			fprintf(out, "\n");
		}
	}
	fprintf(out, "default_pool %s\n", sv->default_pool);
	for (size_t i = 0; i < conf->n_users; i++) {
		const struct conf_user *u = &conf->users[i];
		fprintf(out, "user %s %s pool=%s\n", u->name,
			u->password_hash ? "password_hash" : "password", u->pool ? u->pool : "-");
	}
}
