/* djob_worker_load_plugin checks the plugin ABI before any of the plugin's
 * code runs: argv[1..3] are the test plugins stating this ABI, ABI 0 and
 * none (tests/unit/plugin_abi.c). */
#include "check.h"

#include <djob/djob.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char marker[] = "/tmp/djob-plugin-abi-XXXXXX";

/* Lines the plugins' djob_plugin_register wrote so far. */
static int registrations(void)
{
	FILE *f = fopen(marker, "r");
	int n = 0, c;
	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static int load(const char *path, djob_error_t *err)
{
	djob_config_t *conf;
	djob_worker_t *w;
	int rc = -1;
	if (djob_config_new(&conf, err) == 0 && djob_worker_new(&w, conf, err) == 0) {
		rc = djob_worker_load_plugin(w, path, err);
		djob_worker_free(w);
	}
	djob_config_free(conf);
	return rc;
}

int main(int argc, char **argv)
{
	djob_error_t err;
	char want[4096];
	if (argc != 4) {
		fprintf(stderr, "usage: %s CURRENT OTHER NONE\n", argv[0]);
		return 2;
	}
	int fd = mkstemp(marker);
	CHECK(fd >= 0);
	close(fd);
	setenv("PLUGIN_MARKER", marker, 1);

	CHECK_INT(load(argv[1], &err), 0);
	CHECK_INT(registrations(), 1);

	CHECK_INT(load(argv[2], &err), DJOB_EINVAL);
	snprintf(want, sizeof want,
	         "Plugin %s is built for plugin ABI 0, this libdjob has %d: rebuild it against "
	         "this libdjob",
	         argv[2], DJOB_PLUGIN_ABI_VERSION);
	CHECK_STR(err.message, want);

	CHECK_INT(load(argv[3], &err), DJOB_EINVAL);
	snprintf(
		want, sizeof want,
		"Plugin %s states no plugin ABI (DJOB_PLUGIN_ABI): rebuild it against this libdjob",
		argv[3]);
	CHECK_STR(err.message, want);
	/* Neither refused plugin's register ran. */
	CHECK_INT(registrations(), 1);
	unlink(marker);
	return check_report("plugin_abi_is_checked_at_load");
}
