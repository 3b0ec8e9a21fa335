/*
 * A worker with the example handlers linked in: compute (built into
 * libdjob), file, blockchain and data. The same handlers also exist as
 * plugins (djob-handler-*.so) for djob-worker and djob_worker_load_plugin.
 *
 * Usage: handlers_worker
 *   Configuration comes from the DJOB_* environment variables (see
 *   <djob/config.h>); DJOB_FILE_ROOT is the directory the file handler
 *   serves. Plugins named in DJOB_PLUGINS are loaded as well. Stops cleanly
 *   on SIGINT or SIGTERM.
 */
#include <djob/djob.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* From handler_file.c, handler_blockchain.c and handler_data.c. */
int file_handler_register(djob_worker_t *worker, const char *root, djob_error_t *err);
int blockchain_handler_register(djob_worker_t *worker, djob_error_t *err);
int data_handler_register(djob_worker_t *worker, djob_error_t *err);

static djob_worker_t *worker;

static void on_signal(int sig)
{
	(void)sig;
	djob_worker_request_stop(worker);
}

/* Load every plugin of the comma-separated list. */
static int load_plugins(const char *list, djob_error_t *err)
{
	char *copy = list ? strdup(list) : NULL, *save = NULL;
	int rc = 0;

	for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; p && rc == 0;
	     p = strtok_r(NULL, ",", &save))
		rc = djob_worker_load_plugin(worker, p, err);
	free(copy);
	return rc;
}

int main(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err = {0};
	struct sigaction sa;
	int rc;

	rc = djob_config_new(&conf, &err);
	if (rc == 0)
		rc = djob_config_load_env(conf, &err);
	if (rc == 0)
		rc = djob_worker_new(&worker, conf, &err);
	if (rc == 0)
		rc = djob_worker_register(worker, "compute", djob_handler_compute, NULL, &err);
	if (rc == 0)
		rc = file_handler_register(worker, getenv("DJOB_FILE_ROOT"), &err);
	if (rc == 0)
		rc = blockchain_handler_register(worker, &err);
	if (rc == 0)
		rc = data_handler_register(worker, &err);
	if (rc == 0)
		rc = load_plugins(djob_config_get(conf, "worker.plugins"), &err);
	if (rc == 0) {
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_signal;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		fprintf(stderr,
		        "handlers_worker: worker %s handles compute, file, blockchain, data\n",
		        djob_worker_id(worker));
		rc = djob_worker_run(worker, &err);
	}
	if (rc != 0)
		fprintf(stderr, "handlers_worker: %s\n", err.message);
	djob_worker_free(worker);
	djob_config_free(conf);
	return rc == 0 ? 0 : 1;
}
