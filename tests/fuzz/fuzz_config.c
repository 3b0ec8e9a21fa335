/*
 * The configuration parser (config.c): KEY=VALUE pairs as the daemons'
 * --set flag gives them (djob_config_set_pair), the environment
 * (djob_config_load_env: djob's names, the prototype's, DJOB_KAFKA_*), and
 * api.tokens as the HTTP servers read it (djob_http_init).
 *
 * The input is lines: "env:NAME=VALUE" puts a variable in the environment
 * the load sees (none other is there), "unset:KEY" resets a key, any other
 * line is a pair. Whatever the order, every value the configuration holds
 * must pass its key's checks again, and a load that fails must leave the
 * configuration as it was.
 */
#include "fuzz.h"

#include "http_private.h"

extern char **environ;

/* config.c's keys (a key missing here only goes unchecked). */
static const char *const known[] = {
	"kafka.brokers",
	"mongo.uri",
	"mongo.database",
	"mongo.collection",
	"store.mode",
	"api.port",
	"api.listen",
	"api.url",
	"api.tokens",
	"api.body.max.bytes",
	"token",
	"worker.port",
	"worker.id",
	"worker.sink",
	"worker.plugins",
	"group.id",
	"concurrency",
	"worker.queue",
	"lease.ms",
	"max.attempts",
	"topic.prefix",
	"log.level",
	"types",
	"topic.partitions",
	"scheduler.interval.ms",
	"scheduler.grace.ms",
	"scheduler.batch",
	"submit.writers",
	"submit.linger.ms",
};

#define N_KNOWN (sizeof known / sizeof known[0])
#define MAX_LINES 64

typedef struct {
	char *text; /* every key=value, one a line */
	size_t len, cap;
} dump_t;

static void dump_add(dump_t *d, const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 2;
	if (d->len + n + 1 > d->cap) {
		d->cap = (d->len + n + 1) * 2;
		d->text = realloc(d->text, d->cap);
		FUZZ_ASSERT(d->text != NULL);
	}
	d->len += (size_t)sprintf(d->text + d->len, "%s=%s\n", name, value);
}

static void dump_kafka(const char *name, const char *value, void *opaque)
{
	dump_add(opaque, name, value);
}

/* Every value conf holds, checked once more on a fresh configuration. */
static char *dump_and_recheck(const djob_config_t *conf)
{
	dump_t d = {NULL, 0, 0};
	djob_config_t *fresh;
	djob_error_t err;

	FUZZ_ASSERT(djob_config_new(&fresh, &err) == 0);
	dump_add(&d, "", "");
	for (size_t i = 0; i < N_KNOWN; i++) {
		const char *v = djob_config_get(conf, known[i]);
		if (v == NULL)
			continue;
		dump_add(&d, known[i], v);
		FUZZ_ASSERT(djob_config_set(fresh, known[i], v, &err) == 0);
	}
	djob_config_foreach_kafka(conf, dump_kafka, &d);
	djob_config_free(fresh);
	return d.text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *input = malloc(size + 1), *env[MAX_LINES + 1];
	size_t nenv = 0;
	djob_config_t *conf;
	djob_error_t err;

	FUZZ_ASSERT(input != NULL);
	memcpy(input, data, size);
	input[size] = '\0';
	FUZZ_ASSERT(djob_config_new(&conf, &err) == 0);
	char *line = input, *end = input + strlen(input);
	for (int n = 0; line < end && n < MAX_LINES; n++) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (strncmp(line, "env:", 4) == 0) {
			env[nenv++] = line + 4;
		} else if (strncmp(line, "unset:", 6) == 0) {
			int rc = djob_config_set(conf, line + 6, NULL, &err);
			FUZZ_ASSERT(rc == 0 || rc == DJOB_EINVAL);
		} else {
			memset(&err, 0, sizeof err);
			int rc = djob_config_set_pair(conf, line, &err);
			FUZZ_ASSERT(rc == 0 || (rc == DJOB_EINVAL && err.message[0] != '\0'));
		}
		if (!nl)
			break;
		line = nl + 1;
	}
	env[nenv] = NULL;

	char *before = dump_and_recheck(conf);
	if (nenv > 0) {
		char **saved = environ;
		environ = env;
		int rc = djob_config_load_env(conf, &err);
		environ = saved;
		char *after = dump_and_recheck(conf);
		if (rc != 0)
			FUZZ_ASSERT(strcmp(before, after) == 0);
		free(after);
	}
	free(before);

	/* The HTTP servers' reading of it: api.tokens, api.body.max.bytes. */
	djob_http_t h;
	if (djob_http_init(&h, conf, "api", &err) == 0) {
		FUZZ_ASSERT(h.body_max >= 1);
		for (size_t i = 0; i < h.ntokens; i++)
			FUZZ_ASSERT(h.tokens[i].len > 0 && h.tokens[i].perms != 0);
		djob_http_cleanup(&h);
	}
	djob_config_free(conf);
	free(input);
	return 0;
}
