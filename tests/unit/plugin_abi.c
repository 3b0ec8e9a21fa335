/* Test plugins for unit_plugin_abi_is_checked_at_load, built three ways
 * (tests/unit/meson.build): stating this ABI, another (PLUGIN_ABI), none
 * (PLUGIN_NO_ABI). Registering writes a marker file (PLUGIN_MARKER), so the
 * test sees whether any of the plugin's code ran. */
#include <djob/djob.h>

#include <stdio.h>
#include <stdlib.h>

#define PLUGIN_EXPORT __attribute__((visibility("default")))

#if defined(PLUGIN_ABI)
PLUGIN_EXPORT const int djob_plugin_abi_version = PLUGIN_ABI;
#elif !defined(PLUGIN_NO_ABI)
DJOB_PLUGIN_ABI;
#endif

static djob_job_status_t echo(djob_job_t *job, void *user_data)
{
	(void)job;
	(void)user_data;
	return DJOB_JOB_DONE;
}

PLUGIN_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err);

PLUGIN_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err)
{
	const char *marker = getenv("PLUGIN_MARKER");
	FILE *f = marker ? fopen(marker, "a") : NULL;
	if (f) {
		fputs("registered\n", f);
		fclose(f);
	}
	return djob_worker_register(worker, "echo", echo, NULL, err);
}
