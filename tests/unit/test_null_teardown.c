/*
 * Every public destructor, stop and port getter takes NULL: a daemon whose
 * start failed half-way tears down whatever it has, without checking which
 * of its objects exist (djob_api_server_stop(NULL) used to crash djob-api
 * when its client could not be created).
 */
#include "check.h"

#include <djob/djob.h>

int main(void)
{
	djob_api_server_stop(NULL);
	djob_api_server_free(NULL);
	CHECK(djob_api_server_port(NULL) == -1);
	djob_worker_server_stop(NULL);
	djob_worker_server_free(NULL);
	CHECK(djob_worker_server_port(NULL) == -1);
	djob_scheduler_stop(NULL);
	djob_scheduler_free(NULL);
	CHECK(djob_worker_stop(NULL, NULL) == 0);
	djob_worker_request_stop(NULL);
	djob_worker_free(NULL);
	djob_sink_free(NULL);
	djob_client_free(NULL);
	djob_config_free(NULL);
	djob_free(NULL);

	/* A server never started: stop and port are no-ops. */
	djob_config_t *conf = NULL;
	CHECK(djob_config_new(&conf, NULL) == 0);
	djob_worker_t *w = NULL;
	CHECK(djob_worker_new(&w, conf, NULL) == 0);
	djob_worker_server_t *s = NULL;
	CHECK(djob_worker_server_new(&s, w, conf, NULL) == 0);
	djob_worker_server_stop(s);
	CHECK(djob_worker_server_port(s) == -1);
	djob_worker_server_free(s);
	djob_worker_free(w);
	djob_config_free(conf);
	return check_report("null_teardown");
}
