/*
 * djob-api: the REST API daemon (DESIGN §2). Configuration comes from the
 * environment (DJOB_*, see <djob/config.h>), then from the flags; the
 * routes, tokens and metrics live in libdjob (djob_api_server_*). It also
 * runs the scheduler, which republishes due, stuck and unpublished jobs.
 * SIGTERM or SIGINT stops it cleanly.
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
	fputs("usage: djob-api [options]\n"
	      "  -p, --port N          listen on port N (api.port, DJOB_API_PORT; default 3000)\n"
	      "  -l, --listen ADDR     listen address (api.listen, DJOB_API_LISTEN)\n"
	      "  -s, --set KEY=VALUE   set any configuration key (see <djob/config.h>)\n"
	      "      --no-scheduler    do not run the scheduler in this process\n"
	      "  -h, --help            this text\n"
	      "Environment: DJOB_KAFKA_BROKERS, DJOB_MONGO_URI, DJOB_API_TOKENS\n"
	      "(\"token:role,...\" with roles submit, worker, admin), DJOB_LOG_LEVEL, ...\n"
	      "Without tokens the API listens on 127.0.0.1 only.\n",
	      f);
}

static void log_line(djob_log_level_t level, const char *fmt, const char *arg)
{
	char msg[512];
	snprintf(msg, sizeof msg, fmt, arg);
	djob_log_json_stderr(level, "djob-api", msg, NULL);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'}, {"listen", required_argument, NULL, 'l'},
		{"set", required_argument, NULL, 's'},  {"no-scheduler", no_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
	djob_error_t err = {0};
	djob_config_t *conf;
	int rc = djob_config_new(&conf, &err), scheduler = 1, c;
	if (rc == 0 && !getenv("DJOB_LOG_LEVEL"))
		rc = djob_config_set(conf, "log.level", "info", &err);
	if (rc == 0)
		rc = djob_config_load_env(conf, &err);
	while (rc == 0 && (c = getopt_long(argc, argv, "p:l:s:h", opts, NULL)) != -1) {
		if (c == 'p')
			rc = djob_config_set(conf, "api.port", optarg, &err);
		else if (c == 'l')
			rc = djob_config_set(conf, "api.listen", optarg, &err);
		else if (c == 's')
			rc = djob_config_set_pair(conf, optarg, &err);
		else if (c == 'n')
			scheduler = 0;
		else {
			usage(c == 'h' ? stdout : stderr);
			djob_config_free(conf);
			return c == 'h' ? 0 : 2;
		}
	}
	if (rc == 0 && optind < argc) {
		usage(stderr);
		djob_config_free(conf);
		return 2;
	}
	if (rc != 0) {
		log_line(DJOB_LOG_ERROR, "Bad configuration: %s", err.message);
		djob_config_free(conf);
		return 2;
	}

	/* Signals go to sigwait below, never to a handler: every thread
	 * started from here on inherits the blocked mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	djob_client_t *client = NULL;
	djob_api_server_t *server = NULL;
	djob_scheduler_t *sched = NULL;
	rc = djob_client_new(&client, conf, &err);
	if (rc == 0)
		rc = djob_api_server_new(&server, client, conf, &err);
	if (rc == 0)
		rc = djob_api_server_start(server, 0, &err);
	if (rc == 0 && scheduler) {
		rc = djob_scheduler_new(&sched, conf, &err);
		if (rc == 0)
			rc = djob_scheduler_start(sched, &err);
	}
	if (rc == 0) {
		char port[16];
		snprintf(port, sizeof port, "%d", djob_api_server_port(server));
		log_line(DJOB_LOG_INFO, "djob-api serving on port %s", port);
		int sig = 0;
		sigwait(&sigs, &sig);
		log_line(DJOB_LOG_INFO, "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
	} else {
		log_line(DJOB_LOG_ERROR, "Cannot start: %s", err.message);
	}
	/* Requests in progress finish before the client goes away. */
	djob_api_server_stop(server);
	djob_scheduler_free(sched);
	djob_api_server_free(server);
	djob_client_free(client);
	djob_config_free(conf);
	return rc == 0 ? 0 : 1;
}
