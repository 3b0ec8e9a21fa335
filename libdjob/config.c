/*
 * Configuration: an ordered list of string keys and values, validated when
 * set, plus the log callback.
 */
#include "djob_private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define KAFKA_PREFIX "kafka."
#define KAFKA_ENV_PREFIX "DJOB_KAFKA_"

typedef enum {
	CHECK_STRING,
	CHECK_RANGE,
	CHECK_SINK,
	CHECK_LOG_LEVEL,
	CHECK_MONGO_URI,
	CHECK_STORE_MODE,
	CHECK_TYPES
} check_t;

typedef struct {
	const char *name;
	const char *env; /* djob's variable, or NULL */
	const char *def; /* default, or NULL */
	check_t check;
	long min, max; /* for CHECK_RANGE */
} known_key_t;

/* In the order of config.h; defaults are set in this order. The last two are
 * not yet in config.h's list: the job types a deployment accepts (unset:
 * compute,file,blockchain,data) and the partitions of the topics djob creates
 * (unset: the Kafka module's default). */
static const known_key_t known_keys[] = {
	{"kafka.brokers", "DJOB_KAFKA_BROKERS", "127.0.0.1:9092", CHECK_STRING, 0, 0},
	{"mongo.uri", "DJOB_MONGO_URI", "mongodb://127.0.0.1:27017/jobsdb", CHECK_MONGO_URI, 0, 0},
	{"mongo.database", NULL, "jobsdb", CHECK_STRING, 0, 0},
	{"mongo.collection", "DJOB_MONGO_COLLECTION", "jobs", CHECK_STRING, 0, 0},
	{"store.mode", "DJOB_STORE_MODE", "auto", CHECK_STORE_MODE, 0, 0},
	{"api.port", "DJOB_API_PORT", "3000", CHECK_RANGE, 1, 65535},
	{"api.listen", "DJOB_API_LISTEN", NULL, CHECK_STRING, 0, 0},
	{"api.url", "DJOB_API_URL", "http://127.0.0.1:3000", CHECK_STRING, 0, 0},
	{"api.tokens", "DJOB_API_TOKENS", NULL, CHECK_STRING, 0, 0},
	{"api.body.max.bytes", "DJOB_BODY_MAX_BYTES", "1048576", CHECK_RANGE, 1, 67108864},
	{"token", "DJOB_TOKEN", NULL, CHECK_STRING, 0, 0},
	{"worker.port", "DJOB_WORKER_PORT", "4000", CHECK_RANGE, 1, 65535},
	{"worker.id", "DJOB_WORKER_ID", NULL, CHECK_STRING, 0, 0},
	{"worker.sink", "DJOB_SINK", "store", CHECK_SINK, 0, 0},
	{"worker.plugins", "DJOB_PLUGINS", NULL, CHECK_STRING, 0, 0},
	{"group.id", "DJOB_GROUP_ID", "job-workers", CHECK_STRING, 0, 0},
	{"concurrency", "DJOB_CONCURRENCY", "4", CHECK_RANGE, 1, 1024},
	{"worker.queue", "DJOB_WORKER_QUEUE", "256", CHECK_RANGE, 1, 100000},
	{"lease.ms", "DJOB_LEASE_MS", "30000", CHECK_RANGE, 1000, 3600000},
	{"max.attempts", "DJOB_MAX_ATTEMPTS", "3", CHECK_RANGE, 1, 1000},
	{"topic.prefix", "DJOB_TOPIC_PREFIX", "jobs.", CHECK_STRING, 0, 0},
	{"log.level", "DJOB_LOG_LEVEL", "warning", CHECK_LOG_LEVEL, 0, 0},
	{"types", "DJOB_TYPES", NULL, CHECK_TYPES, 0, 0},
	{"topic.partitions", "DJOB_TOPIC_PARTITIONS", NULL, CHECK_RANGE, 1, 10000},
	{"scheduler.interval.ms", "DJOB_SCHEDULER_INTERVAL_MS", "1000", CHECK_RANGE, 50, 60000},
	{"scheduler.grace.ms", "DJOB_SCHEDULER_GRACE_MS", "10000", CHECK_RANGE, 100, 3600000},
	{"scheduler.batch", "DJOB_SCHEDULER_BATCH", "100", CHECK_RANGE, 1, 1000},
	{"retention.completed.ms", "DJOB_RETENTION_COMPLETED_MS", "0", CHECK_RANGE, 0,
         315360000000L},
	{"retention.failed.ms", "DJOB_RETENTION_FAILED_MS", "0", CHECK_RANGE, 0, 315360000000L},
	{"retention.cancelled.ms", "DJOB_RETENTION_CANCELLED_MS", "0", CHECK_RANGE, 0,
         315360000000L},
	{"retention.batch", "DJOB_RETENTION_BATCH", "500", CHECK_RANGE, 1, 10000},
	{"submit.writers", "DJOB_SUBMIT_WRITERS", "1", CHECK_RANGE, 1, 64},
	{"submit.linger.ms", "DJOB_SUBMIT_LINGER_MS", "8", CHECK_RANGE, 0, 1000},
	{"http.threads", "DJOB_HTTP_THREADS", "128", CHECK_RANGE, 2, 4096},
	{"http.request.timeout.ms", "DJOB_HTTP_REQUEST_TIMEOUT_MS", "5000", CHECK_RANGE, 100,
         600000},
	{"http.keepalive.timeout.ms", "DJOB_HTTP_KEEPALIVE_TIMEOUT_MS", "2000", CHECK_RANGE, 100,
         600000},
	{"http.backlog", "DJOB_HTTP_BACKLOG", "1024", CHECK_RANGE, 1, 65535},
	{"api.tls.ca.file", "DJOB_API_TLS_CA_FILE", NULL, CHECK_STRING, 0, 0},
	{"api.tls.ca.dir", "DJOB_API_TLS_CA_DIR", "/etc/ssl/certs", CHECK_STRING, 0, 0},
};

#define N_KNOWN (sizeof(known_keys) / sizeof(known_keys[0]))

/* The prototype's variables, applied before djob's so that djob's win. */
static const struct {
	const char *env;
	const char *name;
} prototype_env[] = {
	{"PORT", "api.port"},
	{"MONGO_URI", "mongo.uri"},
	{"KAFKA_BROKER", "kafka.brokers"},
};

typedef struct {
	char *name;
	char *value;
} entry_t;

struct djob_config_s {
	entry_t *entries; /* in the order first set */
	size_t count;
	size_t cap;
	djob_log_fn log_fn;
	djob_log_level_t log_level;
	void *log_opaque;
};

static const known_key_t *find_known(const char *name)
{
	for (size_t i = 0; i < N_KNOWN; i++)
		if (strcmp(known_keys[i].name, name) == 0)
			return &known_keys[i];
	return NULL;
}

static entry_t *find_entry(const djob_config_t *conf, const char *name)
{
	for (size_t i = 0; i < conf->count; i++)
		if (strcmp(conf->entries[i].name, name) == 0)
			return &conf->entries[i];
	return NULL;
}

static int parse_level(const char *value, djob_log_level_t *out)
{
	static const djob_log_level_t levels[] = {DJOB_LOG_ERROR, DJOB_LOG_WARNING, DJOB_LOG_INFO,
	                                          DJOB_LOG_DEBUG};
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(value, djob_log_level_name(levels[i])) == 0) {
			*out = levels[i];
			return 0;
		}
	}
	return -1;
}

/* A decimal integer and nothing else: no sign, spaces or suffix. */
static int parse_long(const char *value, long *out)
{
	char *end;
	long v;

	if (value[0] < '0' || value[0] > '9')
		return -1;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* "compute,file": type names (see djob_type_is_valid) separated by commas. */
static int types_are_valid(const char *value)
{
	char name[65];

	for (const char *p = value;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 || len >= sizeof(name))
			return 0;
		memcpy(name, p, len);
		name[len] = '\0';
		if (!djob_type_is_valid(name))
			return 0;
		if (end == NULL)
			return 1;
		p = end + 1;
	}
}

static int check_value(const known_key_t *key, const char *value, djob_error_t *err)
{
	long v;
	djob_log_level_t level;

	if (value[0] == '\0')
		return djob_set_error(err, DJOB_EINVAL, 0, "Configuration key %s must not be empty",
		                      key->name);
	switch (key->check) {
	case CHECK_STRING:
		return 0;
	case CHECK_RANGE:
		if (parse_long(value, &v) != 0 || v < key->min || v > key->max)
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"Configuration key %s must be an integer from %ld to %ld",
				key->name, key->min, key->max);
		return 0;
	case CHECK_SINK:
		if (strcmp(value, "store") != 0 && strcmp(value, "api") != 0)
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "Configuration key %s must be store or api",
			                      key->name);
		return 0;
	case CHECK_LOG_LEVEL:
		if (parse_level(value, &level) != 0)
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"Configuration key %s must be error, warning, info or debug",
				key->name);
		return 0;
	case CHECK_MONGO_URI:
		if (strncmp(value, "mongodb://", 10) != 0 &&
		    strncmp(value, "mongodb+srv://", 14) != 0)
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"Configuration key %s must start with mongodb:// or mongodb+srv://",
				key->name);
		return 0;
	case CHECK_STORE_MODE:
		if (strcmp(value, "auto") != 0 && strcmp(value, "atomic") != 0 &&
		    strcmp(value, "locks") != 0)
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "Configuration key %s must be auto, atomic or locks",
			                      key->name);
		return 0;
	case CHECK_TYPES:
		if (!types_are_valid(value))
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"Configuration key %s must be a comma-separated list of type names",
				key->name);
		return 0;
	}
	return djob_set_error(err, DJOB_EINTERNAL, 0, "Unhandled check for %s", key->name);
}

static void remove_entry(djob_config_t *conf, entry_t *e)
{
	size_t i = (size_t)(e - conf->entries);
	free(e->name);
	free(e->value);
	memmove(&conf->entries[i], &conf->entries[i + 1],
	        (conf->count - i - 1) * sizeof(conf->entries[0]));
	conf->count--;
}

/* Store name = value without checking it. */
static int put(djob_config_t *conf, const char *name, const char *value, djob_error_t *err)
{
	entry_t *e = find_entry(conf, name);
	char *v = strdup(value);

	if (v == NULL)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	if (e != NULL) {
		free(e->value);
		e->value = v;
		return 0;
	}
	if (conf->count == conf->cap) {
		size_t cap = conf->cap ? conf->cap * 2 : 32;
		entry_t *entries = realloc(conf->entries, cap * sizeof(*entries));
		if (entries == NULL) {
			free(v);
			return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
		}
		conf->entries = entries;
		conf->cap = cap;
	}
	e = &conf->entries[conf->count];
	e->name = strdup(name);
	if (e->name == NULL) {
		free(v);
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	}
	e->value = v;
	conf->count++;
	return 0;
}

int djob_config_new(djob_config_t **out, djob_error_t *err)
{
	djob_config_t *conf;

	if (out == NULL)
		return djob_set_error(err, DJOB_EINVAL, 0, "Output pointer is NULL");
	*out = NULL;
	conf = calloc(1, sizeof(*conf));
	if (conf == NULL)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	conf->log_fn = djob_log_json_stderr;
	conf->log_level = DJOB_LOG_WARNING;
	for (size_t i = 0; i < N_KNOWN; i++) {
		if (known_keys[i].def == NULL)
			continue;
		int rc = put(conf, known_keys[i].name, known_keys[i].def, err);
		if (rc != 0) {
			djob_config_free(conf);
			return rc;
		}
	}
	*out = conf;
	return 0;
}

int djob_config_dup(djob_config_t **out, const djob_config_t *conf, djob_error_t *err)
{
	djob_config_t *copy;

	if (out == NULL || conf == NULL)
		return djob_set_error(err, DJOB_EINVAL, 0, "Configuration is NULL");
	*out = NULL;
	copy = calloc(1, sizeof(*copy));
	if (copy == NULL)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	copy->log_fn = conf->log_fn;
	copy->log_level = conf->log_level;
	copy->log_opaque = conf->log_opaque;
	for (size_t i = 0; i < conf->count; i++) {
		int rc = put(copy, conf->entries[i].name, conf->entries[i].value, err);
		if (rc != 0) {
			djob_config_free(copy);
			return rc;
		}
	}
	*out = copy;
	return 0;
}

void djob_config_free(djob_config_t *conf)
{
	if (conf == NULL)
		return;
	for (size_t i = 0; i < conf->count; i++) {
		free(conf->entries[i].name);
		free(conf->entries[i].value);
	}
	free(conf->entries);
	free(conf);
}

/* A NULL value restores a known key's default (or unsets it) and removes a
 * kafka.* key. */
int djob_config_set(djob_config_t *conf, const char *name, const char *value, djob_error_t *err)
{
	const known_key_t *key;
	int rc;

	if (conf == NULL || name == NULL)
		return djob_set_error(err, DJOB_EINVAL, 0, "Configuration or key is NULL");
	key = find_known(name);
	if (key == NULL) {
		if (strncmp(name, KAFKA_PREFIX, strlen(KAFKA_PREFIX)) != 0 ||
		    name[strlen(KAFKA_PREFIX)] == '\0')
			return djob_set_error(err, DJOB_EINVAL, 0, "Unknown configuration key %s",
			                      name);
		if (value == NULL) {
			entry_t *e = find_entry(conf, name);
			if (e != NULL)
				remove_entry(conf, e);
			return 0;
		}
		return put(conf, name, value, err);
	}
	if (value == NULL) {
		if (key->def == NULL) {
			entry_t *e = find_entry(conf, name);
			if (e != NULL)
				remove_entry(conf, e);
			return 0;
		}
		value = key->def;
	}
	rc = check_value(key, value, err);
	if (rc != 0)
		return rc;
	rc = put(conf, name, value, err);
	if (rc == 0 && key->check == CHECK_LOG_LEVEL)
		parse_level(value, &conf->log_level);
	return rc;
}

const char *djob_config_get(const djob_config_t *conf, const char *name)
{
	const entry_t *e;

	if (conf == NULL || name == NULL)
		return NULL;
	e = find_entry(conf, name);
	return e ? e->value : NULL;
}

long djob_config_get_int(const djob_config_t *conf, const char *name)
{
	const char *v = djob_config_get(conf, name);
	return v ? strtol(v, NULL, 10) : 0;
}

/* Set name from the variable env, when it is set and not empty. */
static int set_from_env(djob_config_t *conf, const char *env, const char *name, djob_error_t *err)
{
	djob_error_t e;
	const char *value = getenv(env);
	int rc;

	if (value == NULL || value[0] == '\0')
		return 0;
	rc = djob_config_set(conf, name, value, &e);
	if (rc != 0)
		return djob_set_error(err, rc, 0, "Environment variable %s: %s", env, e.message);
	return 0;
}

/* DJOB_KAFKA_SASL_MECHANISMS -> kafka.sasl.mechanisms */
static int set_kafka_env(djob_config_t *conf, const char *var, djob_error_t *err)
{
	const char *eq = strchr(var, '=');
	const char *prop = var + strlen(KAFKA_ENV_PREFIX);
	size_t plen;
	char *name;
	int rc;

	if (eq == NULL || eq[1] == '\0')
		return 0;
	plen = (size_t)(eq - prop);
	if (plen == 0)
		return djob_set_error(err, DJOB_EINVAL, 0,
		                      "Environment variable %s names no Kafka property",
		                      KAFKA_ENV_PREFIX);
	name = malloc(strlen(KAFKA_PREFIX) + plen + 1);
	if (name == NULL)
		return djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
	memcpy(name, KAFKA_PREFIX, strlen(KAFKA_PREFIX));
	for (size_t i = 0; i < plen; i++) {
		char c = prop[i];
		if (c == '_')
			c = '.';
		else if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		name[strlen(KAFKA_PREFIX) + i] = c;
	}
	name[strlen(KAFKA_PREFIX) + plen] = '\0';
	rc = djob_config_set(conf, name, eq + 1, err);
	free(name);
	return rc;
}

static int load_env(djob_config_t *conf, djob_error_t *err)
{
	int rc;

	for (size_t i = 0; i < sizeof(prototype_env) / sizeof(prototype_env[0]); i++) {
		rc = set_from_env(conf, prototype_env[i].env, prototype_env[i].name, err);
		if (rc != 0)
			return rc;
	}
	for (size_t i = 0; i < N_KNOWN; i++) {
		if (known_keys[i].env == NULL)
			continue;
		rc = set_from_env(conf, known_keys[i].env, known_keys[i].name, err);
		if (rc != 0)
			return rc;
	}
	for (char **ep = environ; ep != NULL && *ep != NULL; ep++) {
		if (strncmp(*ep, KAFKA_ENV_PREFIX, strlen(KAFKA_ENV_PREFIX)) != 0 ||
		    strncmp(*ep, "DJOB_KAFKA_BROKERS=", strlen("DJOB_KAFKA_BROKERS=")) == 0)
			continue;
		rc = set_kafka_env(conf, *ep, err);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* All or nothing: the variables are applied to a copy that replaces conf's
 * contents only when every one of them was valid. */
int djob_config_load_env(djob_config_t *conf, djob_error_t *err)
{
	djob_config_t *copy;
	djob_config_t tmp;
	int rc;

	if (conf == NULL)
		return djob_set_error(err, DJOB_EINVAL, 0, "Configuration is NULL");
	rc = djob_config_dup(&copy, conf, err);
	if (rc != 0)
		return rc;
	rc = load_env(copy, err);
	if (rc == 0) {
		tmp = *conf;
		*conf = *copy;
		*copy = tmp;
	}
	djob_config_free(copy);
	return rc;
}

void djob_config_foreach_kafka(const djob_config_t *conf,
                               void (*fn)(const char *name, const char *value, void *opaque),
                               void *opaque)
{
	if (conf == NULL || fn == NULL)
		return;
	for (size_t i = 0; i < conf->count; i++) {
		const entry_t *e = &conf->entries[i];
		/* kafka.brokers is djob's own key (bootstrap.servers), not a property. */
		if (strncmp(e->name, KAFKA_PREFIX, strlen(KAFKA_PREFIX)) != 0 ||
		    strcmp(e->name, "kafka.brokers") == 0)
			continue;
		fn(e->name + strlen(KAFKA_PREFIX), e->value, opaque);
	}
}

void djob_config_set_log(djob_config_t *conf, djob_log_fn fn, djob_log_level_t level, void *opaque)
{
	if (conf == NULL)
		return;
	if (level < DJOB_LOG_ERROR)
		level = DJOB_LOG_ERROR;
	if (level > DJOB_LOG_DEBUG)
		level = DJOB_LOG_DEBUG;
	conf->log_fn = fn;
	conf->log_level = level;
	conf->log_opaque = opaque;
	/* Keep log.level in step; on allocation failure the old text stays. */
	put(conf, "log.level", djob_log_level_name(level), NULL);
}

void djob_config_log_target(const djob_config_t *conf, djob_log_fn *fn, djob_log_level_t *level,
                            void **opaque)
{
	if (conf == NULL) {
		*fn = djob_log_json_stderr;
		*level = DJOB_LOG_WARNING;
		*opaque = NULL;
		return;
	}
	*fn = conf->log_fn;
	*level = conf->log_level;
	*opaque = conf->log_opaque;
}

int djob_config_set_pair(djob_config_t *conf, const char *pair, djob_error_t *err)
{
	const char *eq = pair ? strchr(pair, '=') : NULL;
	if (!eq || eq == pair)
		return djob_set_error(err, DJOB_EINVAL, 0, "Expected KEY=VALUE, not %s",
		                      pair ? pair : "nothing");
	char *name = strndup(pair, (size_t)(eq - pair));
	if (!name)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_config_set(conf, name, eq + 1, err);
	free(name);
	return rc;
}
