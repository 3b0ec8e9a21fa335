/*
 * djob-worker: the reference worker daemon. It runs the built-in compute
 * handler and the handler plugins named in worker.plugins, records status
 * through the sink named in worker.sink (store: MongoDB; api: PATCH on
 * djob-api with a bearer token), and serves POST /start, POST /stop,
 * GET /health and GET /metrics (djob_worker_server_*). Configuration comes
 * from the environment, then from the flags. SIGTERM or SIGINT drains the
 * jobs in flight, commits and leaves the group.
 */
#include <djob/djob.h>

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fputs("usage: djob-worker [options]\n"
	      "  -p, --port N          control port (worker.port, DJOB_WORKER_PORT; default 4000)\n"
	      "      --sink store|api  where status goes (worker.sink, DJOB_SINK)\n"
	      "      --plugin PATH     load a handler plugin (adds to worker.plugins)\n"
	      "  -s, --set KEY=VALUE   set any configuration key (see <djob/config.h>)\n"
	      "      --stopped         do not consume until POST /start\n"
	      "  -h, --help            this text\n"
	      "Environment: DJOB_KAFKA_BROKERS, DJOB_MONGO_URI, DJOB_GROUP_ID, DJOB_CONCURRENCY,\n"
	      "DJOB_PLUGINS, DJOB_SINK, DJOB_API_URL and DJOB_TOKEN (api sink), ...\n",
	      f);
}

static void log_line(djob_log_level_t level, const char *fmt, const char *arg)
{
	char msg[512];
	snprintf(msg, sizeof msg, fmt, arg);
	djob_log_json_stderr(level, "djob-worker", msg, NULL);
}

/* Append a plugin path to worker.plugins. */
static int add_plugin(djob_config_t *conf, const char *path, djob_error_t *err)
{
	const char *cur = djob_config_get(conf, "worker.plugins");
	size_t n = (cur ? strlen(cur) : 0) + strlen(path) + 2;
	char *v = malloc(n);
	if (!v)
		return -1;
	snprintf(v, n, "%s%s%s", cur && *cur ? cur : "", cur && *cur ? "," : "", path);
	int rc = djob_config_set(conf, "worker.plugins", v, err);
	free(v);
	return rc;
}

/* Handlers: compute, then every plugin (a plugin may replace compute). */
static int load_handlers(djob_worker_t *w, const djob_config_t *conf, djob_error_t *err)
{
	int rc = djob_worker_register(w, "compute", djob_handler_compute, NULL, err);
	const char *list = djob_config_get(conf, "worker.plugins");
	char *copy = list ? strdup(list) : NULL, *save = NULL;
	for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; rc == 0 && p;
	     p = strtok_r(NULL, ",", &save))
		if (*p && (rc = djob_worker_load_plugin(w, p, err)) == 0)
			log_line(DJOB_LOG_INFO, "Loaded plugin %s", p);
	free(copy);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
	                                     {"sink", required_argument, NULL, 'k'},
	                                     {"plugin", required_argument, NULL, 'P'},
	                                     {"set", required_argument, NULL, 's'},
	                                     {"stopped", no_argument, NULL, 'S'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	djob_error_t err = {0};
	djob_config_t *conf;
	int rc = djob_config_new(&conf, &err), start = 1, c;
	if (rc == 0 && !getenv("DJOB_LOG_LEVEL"))
		rc = djob_config_set(conf, "log.level", "info", &err);
	if (rc == 0)
		rc = djob_config_load_env(conf, &err);
	while (rc == 0 && (c = getopt_long(argc, argv, "p:s:h", opts, NULL)) != -1) {
		if (c == 'p')
			rc = djob_config_set(conf, "worker.port", optarg, &err);
		else if (c == 'k')
			rc = djob_config_set(conf, "worker.sink", optarg, &err);
		else if (c == 'P')
			rc = add_plugin(conf, optarg, &err);
		else if (c == 's')
			rc = djob_config_set_pair(conf, optarg, &err);
		else if (c == 'S')
			start = 0;
		else {
			usage(c == 'h' ? stdout : stderr);
			djob_config_free(conf);
			return c == 'h' ? 0 : 2;
		}
	}
	if (rc != 0 || optind < argc) {
		if (rc != 0)
			log_line(DJOB_LOG_ERROR, "Bad configuration: %s", err.message);
		else
			usage(stderr);
		djob_config_free(conf);
		return 2;
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	djob_worker_t *worker = NULL;
	djob_worker_server_t *server = NULL;
	djob_sink_t *sink = NULL;
	const char *sink_name = djob_config_get(conf, "worker.sink");
	rc = djob_worker_new(&worker, conf, &err);
	if (rc == 0)
		rc = load_handlers(worker, conf, &err);
	if (rc == 0 && sink_name && strcmp(sink_name, "api") == 0) {
		rc = djob_sink_api_new(&sink, conf, &err);
		if (rc == 0)
			rc = djob_worker_set_sink(worker, sink, &err);
	}
	if (rc == 0)
		rc = djob_worker_server_new(&server, worker, conf, &err);
	if (rc == 0)
		rc = djob_worker_server_start(server, 0, &err);
	if (rc == 0 && start)
		rc = djob_worker_start(worker, &err);
	if (rc == 0) {
		char msg[64];
		snprintf(msg, sizeof msg, "%d", djob_worker_server_port(server));
		log_line(DJOB_LOG_INFO, "djob-worker serving on port %s", msg);
		log_line(DJOB_LOG_INFO, "Worker id %s", djob_worker_id(worker));
		int sig = 0;
		sigwait(&sigs, &sig);
		log_line(DJOB_LOG_INFO, "%s: draining and shutting down",
		         sig == SIGINT ? "SIGINT" : "SIGTERM");
	} else {
		log_line(DJOB_LOG_ERROR, "Cannot start: %s", err.message);
	}
	/* No /start may race the shutdown: close the control port first. */
	if (server)
		djob_worker_server_stop(server);
	if (worker)
		djob_worker_stop(worker, NULL);
	djob_worker_server_free(server);
	djob_worker_free(worker);
	djob_config_free(conf);
	return rc == 0 ? 0 : 1;
}
