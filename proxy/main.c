/* sockpool: SOCKS5 forward proxy with weighted source-IP pools. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "health.h"
#include "healthcheck.h"
#include "log.h"
#include "proxy.h"
#include "version.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: sockpool [-c FILE] [--check [--strict] | --healthcheck]\n"
		     "\n"
		     "SOCKS5 proxy that picks each connection's source IP from weighted pools.\n"
		     "\n"
		     "  -c, --config FILE  configuration file (INI); without it the embedded\n"
		     "                     default runs: 127.0.0.1:1080 and [::1]:1080, loopback\n"
		     "                     clients, the default route plus SOCKPOOL_SOURCES\n"
		     "  -t, --check        validate the configuration, print the resolved pools\n"
		     "                     and exit 0 (valid) or 1 (invalid); source addresses\n"
		     "                     missing on this host are listed as warnings\n"
		     "      --strict       with --check: exit 1 when there is any warning\n"
		     "      --healthcheck  probe the sockpool this configuration describes:\n"
		     "                     GET /healthz on admin_listen, else a SOCKS5 greeting\n"
		     "                     to the first listener; exit 0 (healthy) or 1\n"
		     "  -V, --version      print the version and exit\n"
		     "  -h, --help         print this help and exit\n"
		     "\n"
		     "Signals: SIGHUP reloads the file, SIGUSR1 reopens the access log file,\n"
		     "SIGTERM/SIGINT drain and exit.\n"
		     "\n"
		     "Manuals: sockpool(8) for options, signals and files; sockpool.ini(5) for\n"
		     "every section and key of the configuration file.\n");
}

static void on_missing_address(const struct conf_source *cs, int err, void *ctx)
{
	const char *path = ctx;
	char addr[64];

	conf_addr_str((const struct sockaddr *)&cs->addr, addr, sizeof addr);
	fprintf(stderr,
		"sockpool: warning: %s:%u: [source \"%s\"] address %s is not on this host (%s): "
		"the source starts suspended until it is\n",
		path, cs->line, cs->name, addr, strerror(err));
}

/* --check: build the pools too, which catches what only the pool engine
 * checks, then print the resolved configuration. Source addresses missing
 * on this host are warnings; with `strict` any warning fails. */
static int check_config(struct conf *conf, bool strict)
{
	struct proxy_gen *gen = NULL;
	char err[CONF_ERR_MAX];

	if (proxy_gen_new(conf, NULL, NULL, &gen, err, sizeof err) < 0) {
		fprintf(stderr, "sockpool: %s\n", err);
		return 1; /* conf was freed with the failed generation */
	}
	for (size_t i = 0; i < conf->n_warnings; i++)
		fprintf(stderr, "sockpool: warning: %s\n", conf->warnings[i]);
	size_t warnings =
	    conf->n_warnings + health_missing_addresses(conf, on_missing_address, conf->path);
	conf_dump(conf, stdout);
	proxy_gen_unref(gen); /* frees conf with it */
	if (strict && warnings) {
		fprintf(stderr, "sockpool: --strict: %zu warning%s\n", warnings,
			warnings == 1 ? "" : "s");
		return 1;
	}
	printf("configuration ok\n");
	return 0;
}

/* --healthcheck: probe what conf describes; for a container HEALTHCHECK. */
static int healthcheck(struct conf *conf)
{
	char msg[CONF_ERR_MAX];
	/* Well inside a container HEALTHCHECK's usual --timeout=3s. */
	int rc = healthcheck_run(conf, 2500, msg, sizeof msg);

	printf("sockpool: %s: %s\n", rc == 0 ? "healthy" : "unhealthy", msg);
	conf_free(conf);
	return rc == 0 ? 0 : 1;
}

/* @return -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, const char **path, bool *check, bool *strict,
		      bool *health)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 't'},
	    {"strict", no_argument, NULL, 'S'},	     /* no short form */
	    {"healthcheck", no_argument, NULL, 'H'}, /* no short form */
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			*path = optarg;
			break;
		case 't':
			*check = true;
			break;
		case 'S':
			*strict = true;
			break;
		case 'H':
			*health = true;
			break;
		case 'V':
			printf("sockpool %s\n", SOCKPOOL_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (*check && *health) {
		fprintf(stderr, "sockpool: --check and --healthcheck exclude each other\n");
		return 2;
	}
	if (*strict && !*check) {
		fprintf(stderr, "sockpool: --strict only goes with --check\n");
		usage(stderr);
		return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "sockpool: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool check = false, strict = false, health = false;
	char err[CONF_ERR_MAX] = "";
	struct conf *conf = NULL;
	int rc;

	/* libuv's threadpool runs DNS lookups, password checks and prefix
	 * probes; its default of 4 threads lets a few slow resolvers hold up
	 * every other lookup. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	rc = parse_args(argc, argv, &path, &check, &strict, &health);
	if (rc >= 0)
		return rc;
	if (path)
		rc = conf_load_file(path, &conf, err, sizeof err);
	else
		rc = conf_load_default(getenv("SOCKPOOL_SOURCES"), &conf, err, sizeof err);
	if (rc < 0) {
		if (check || health)
			fprintf(stderr, "sockpool: %s\n", err[0] ? err : strerror(-rc));
		else
			log_error("main", "configuration rejected: %s",
				  err[0] ? err : strerror(-rc));
		return 1;
	}
	if (health)
		return healthcheck(conf);
	return check ? check_config(conf, strict) : proxy_run(conf, path);
}
