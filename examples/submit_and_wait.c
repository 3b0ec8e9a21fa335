/* Submit a compute job and print its result once a worker has run it.
 * Usage: submit_and_wait [input]   (reads DJOB_* variables for servers) */
#include <djob/djob.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *input = argc > 1 ? argv[1] : "hello";
	char payload[512], *id = NULL, *job = NULL;
	djob_config_t *conf = NULL;
	djob_client_t *client = NULL;
	djob_error_t err = {0};
	snprintf(payload, sizeof payload, "{\"input\":\"%s\"}", input); /* no quoting: a demo */
	int rc = djob_config_new(&conf, &err);
	if (rc == 0)
		rc = djob_config_load_env(conf, &err);
	if (rc == 0)
		rc = djob_client_new(&client, conf, &err);
	if (rc == 0)
		rc = djob_client_submit(&id, client, "compute", payload, strlen(payload), NULL, &err);
	if (rc == 0)
		rc = djob_client_wait(&job, client, id, 30000, &err);
	if (rc == 0)
		printf("%s\n", job);
	else
		fprintf(stderr, "submit_and_wait: %s\n", err.message);
	djob_free(job);
	djob_free(id);
	djob_client_free(client);
	djob_config_free(conf);
	return rc == 0 ? 0 : 1;
}
