/* Configuration: defaults, set/get, validation, environment, kafka.*. */
#include "check.h"
#include "djob_private.h"

#include <stdlib.h>

static void test_new_config_holds_every_default(void)
{
	djob_config_t *conf = NULL;
	djob_log_fn fn;
	djob_log_level_t level;
	void *opaque = &fn;

	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_STR(djob_config_get(conf, "kafka.brokers"), "127.0.0.1:9092");
	CHECK_STR(djob_config_get(conf, "mongo.uri"), "mongodb://127.0.0.1:27017/jobsdb");
	CHECK_STR(djob_config_get(conf, "mongo.database"), "jobsdb");
	CHECK_STR(djob_config_get(conf, "mongo.collection"), "jobs");
	CHECK_STR(djob_config_get(conf, "api.port"), "3000");
	CHECK_STR(djob_config_get(conf, "api.url"), "http://127.0.0.1:3000");
	CHECK_STR(djob_config_get(conf, "api.body.max.bytes"), "1048576");
	CHECK_STR(djob_config_get(conf, "worker.port"), "4000");
	CHECK_STR(djob_config_get(conf, "worker.sink"), "store");
	CHECK_STR(djob_config_get(conf, "group.id"), "job-workers");
	CHECK_STR(djob_config_get(conf, "concurrency"), "4");
	CHECK_STR(djob_config_get(conf, "lease.ms"), "30000");
	CHECK_STR(djob_config_get(conf, "max.attempts"), "3");
	CHECK_STR(djob_config_get(conf, "topic.prefix"), "jobs.");
	CHECK_STR(djob_config_get(conf, "log.level"), "warning");
	/* no default */
	CHECK(djob_config_get(conf, "api.listen") == NULL);
	CHECK(djob_config_get(conf, "api.tokens") == NULL);
	CHECK(djob_config_get(conf, "token") == NULL);
	CHECK(djob_config_get(conf, "worker.id") == NULL);
	CHECK(djob_config_get(conf, "worker.plugins") == NULL);
	CHECK(djob_config_get(conf, "no.such.key") == NULL);
	CHECK_INT(djob_config_get_int(conf, "api.port"), 3000);
	CHECK_INT(djob_config_get_int(conf, "lease.ms"), 30000);
	CHECK_INT(djob_config_get_int(conf, "token"), 0);
	djob_config_log_target(conf, &fn, &level, &opaque);
	CHECK(fn == djob_log_json_stderr);
	CHECK_INT(level, DJOB_LOG_WARNING);
	CHECK(opaque == NULL);
	djob_config_free(conf);
	djob_config_free(NULL);
}

static void test_set_then_get_returns_the_value(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	CHECK_INT(djob_config_new(&conf, &err), 0);
	CHECK_INT(djob_config_set(conf, "api.port", "8080", &err), 0);
	CHECK_STR(djob_config_get(conf, "api.port"), "8080");
	CHECK_INT(djob_config_get_int(conf, "api.port"), 8080);
	CHECK_INT(djob_config_set(conf, "token", "s3cret", &err), 0);
	CHECK_STR(djob_config_get(conf, "token"), "s3cret");
	CHECK_INT(djob_config_set(conf, "mongo.uri", "mongodb+srv://db.example/jobsdb", &err), 0);
	CHECK_INT(djob_config_set(conf, "worker.sink", "api", &err), 0);
	CHECK_INT(djob_config_set(conf, "concurrency", "1024", &err), 0);
	CHECK_INT(djob_config_set(conf, "lease.ms", "1000", &err), 0);
	CHECK_INT(djob_config_set(conf, "max.attempts", "1", &err), 0);
	CHECK_INT(djob_config_set(conf, "api.body.max.bytes", "67108864", &err), 0);
	CHECK_INT(djob_config_set(conf, "worker.port", "65535", &err), 0);
	/* NULL restores the default, or unsets a key without one */
	CHECK_INT(djob_config_set(conf, "api.port", NULL, &err), 0);
	CHECK_STR(djob_config_get(conf, "api.port"), "3000");
	CHECK_INT(djob_config_set(conf, "token", NULL, &err), 0);
	CHECK(djob_config_get(conf, "token") == NULL);
	djob_config_free(conf);
}

static void test_set_pair_splits_at_the_first_equals_sign(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	CHECK_INT(djob_config_new(&conf, &err), 0);
	CHECK_INT(djob_config_set_pair(conf, "api.port=8081", &err), 0);
	CHECK_STR(djob_config_get(conf, "api.port"), "8081");
	CHECK_INT(djob_config_set_pair(conf, "kafka.sasl.password=a=b", &err), 0);
	CHECK_INT(djob_config_set_pair(conf, "api.port", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "KEY=VALUE") != NULL);
	CHECK_INT(djob_config_set_pair(conf, "=3000", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set_pair(conf, "api.port=http", &err), DJOB_EINVAL);
	CHECK_STR(djob_config_get(conf, "api.port"), "8081");
	djob_config_free(conf);
}

static void test_log_level_key_sets_the_log_filter(void)
{
	djob_config_t *conf = NULL;
	djob_log_fn fn;
	djob_log_level_t level;
	void *opaque;
	int marker;

	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_set(conf, "log.level", "debug", NULL), 0);
	djob_config_log_target(conf, &fn, &level, &opaque);
	CHECK_INT(level, DJOB_LOG_DEBUG);
	djob_config_set_log(conf, NULL, DJOB_LOG_INFO, &marker);
	djob_config_log_target(conf, &fn, &level, &opaque);
	CHECK(fn == NULL);
	CHECK_INT(level, DJOB_LOG_INFO);
	CHECK(opaque == &marker);
	CHECK_STR(djob_config_get(conf, "log.level"), "info");
	djob_config_free(conf);
}

static void test_invalid_values_are_refused_and_change_nothing(void)
{
	static const struct {
		const char *name;
		const char *value;
	} bad[] = {
		{"api.port", "0"},
		{"api.port", "65536"},
		{"api.port", "http"},
		{"api.port", "80x"},
		{"api.port", " 80"},
		{"api.port", "-1"},
		{"api.port", ""},
		{"worker.port", "99999999999999999999999"},
		{"concurrency", "0"},
		{"concurrency", "1025"},
		{"lease.ms", "999"},
		{"lease.ms", "3600001"},
		{"max.attempts", "0"},
		{"max.attempts", "1001"},
		{"api.body.max.bytes", "0"},
		{"api.body.max.bytes", "67108865"},
		{"worker.sink", "mongo"},
		{"worker.sink", "STORE"},
		{"log.level", "verbose"},
		{"log.level", "WARNING"},
		{"mongo.uri", "http://127.0.0.1:27017"},
		{"mongo.uri", "mongodb:/x"},
		{"group.id", ""},
		{"token", ""},
	};
	djob_config_t *conf = NULL;
	djob_error_t err;

	CHECK_INT(djob_config_new(&conf, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *before = djob_config_get(conf, bad[i].name);
		char *saved = before ? strdup(before) : NULL;
		memset(&err, 0, sizeof(err));
		int rc = djob_config_set(conf, bad[i].name, bad[i].value, &err);
		if (rc != DJOB_EINVAL)
			fprintf(stderr, "accepted %s=%s\n", bad[i].name, bad[i].value);
		CHECK_INT(rc, DJOB_EINVAL);
		CHECK_INT(err.code, DJOB_EINVAL);
		CHECK(strstr(err.message, bad[i].name) != NULL);
		const char *after = djob_config_get(conf, bad[i].name);
		CHECK((saved == NULL && after == NULL) ||
		      (saved && after && strcmp(saved, after) == 0));
		free(saved);
	}
	djob_config_free(conf);
}

static void test_types_and_topic_partitions_are_checked(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK(djob_config_get(conf, "types") == NULL);
	CHECK(djob_config_get(conf, "topic.partitions") == NULL);
	CHECK_INT(djob_config_set(conf, "types", "compute,file,my-type_2", &err), 0);
	CHECK_INT(djob_config_set(conf, "types", "compute", &err), 0);
	CHECK_INT(djob_config_set(conf, "types", "compute,", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(conf, "types", "compute,,file", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(conf, "types", "compute, file", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(conf, "types", "a.b", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "types") != NULL);
	CHECK_STR(djob_config_get(conf, "types"), "compute");
	CHECK_INT(djob_config_set(conf, "topic.partitions", "12", &err), 0);
	CHECK_INT(djob_config_get_int(conf, "topic.partitions"), 12);
	CHECK_INT(djob_config_set(conf, "topic.partitions", "0", &err), DJOB_EINVAL);
	djob_config_free(conf);
}

static void test_unknown_keys_are_refused_naming_the_key(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_set(conf, "api.prot", "3000", &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "api.prot") != NULL);
	CHECK_INT(djob_config_set(conf, "kafka.", "x", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(conf, "kafka", "x", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(conf, "", "x", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(conf, NULL, "x", &err), DJOB_EINVAL);
	CHECK_INT(djob_config_set(NULL, "api.port", "1", &err), DJOB_EINVAL);
	djob_config_free(conf);
}

struct seen {
	char text[512];
	int count;
};

static void collect(const char *name, const char *value, void *opaque)
{
	struct seen *s = opaque;
	size_t n = strlen(s->text);
	snprintf(s->text + n, sizeof(s->text) - n, "%s=%s;", name, value);
	s->count++;
}

static void test_kafka_properties_pass_through_in_order(void)
{
	djob_config_t *conf = NULL;
	djob_config_t *copy = NULL;
	struct seen s = {{0}, 0};

	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_set(conf, "kafka.security.protocol", "SASL_SSL", NULL), 0);
	CHECK_INT(djob_config_set(conf, "kafka.sasl.mechanisms", "PLAIN", NULL), 0);
	CHECK_INT(djob_config_set(conf, "kafka.sasl.password", "", NULL), 0);
	CHECK_INT(djob_config_set(conf, "kafka.security.protocol", "SSL", NULL), 0);
	djob_config_foreach_kafka(conf, collect, &s);
	/* kafka.brokers is djob's key, not a librdkafka property */
	CHECK_STR(s.text, "security.protocol=SSL;sasl.mechanisms=PLAIN;sasl.password=;");
	CHECK_INT(s.count, 3);

	CHECK_INT(djob_config_set(conf, "kafka.sasl.mechanisms", NULL, NULL), 0);
	CHECK_INT(djob_config_dup(&copy, conf, NULL), 0);
	djob_config_free(conf);
	memset(&s, 0, sizeof(s));
	djob_config_foreach_kafka(copy, collect, &s);
	CHECK_STR(s.text, "security.protocol=SSL;sasl.password=;");
	CHECK_STR(djob_config_get(copy, "api.port"), "3000");
	djob_config_free(copy);
}

static const char *const env_names[] = {
	"PORT",
	"MONGO_URI",
	"KAFKA_BROKER",
	"DJOB_API_PORT",
	"DJOB_MONGO_URI",
	"DJOB_KAFKA_BROKERS",
	"DJOB_WORKER_PORT",
	"DJOB_GROUP_ID",
	"DJOB_CONCURRENCY",
	"DJOB_LEASE_MS",
	"DJOB_MAX_ATTEMPTS",
	"DJOB_API_TOKENS",
	"DJOB_TOKEN",
	"DJOB_API_URL",
	"DJOB_SINK",
	"DJOB_LOG_LEVEL",
	"DJOB_KAFKA_SASL_MECHANISMS",
	"DJOB_KAFKA_SECURITY_PROTOCOL",
	"DJOB_KAFKA_",
	"DJOB_BODY_MAX_BYTES",
	"DJOB_WORKER_ID",
	"DJOB_TOPIC_PREFIX",
	"DJOB_API_LISTEN",
	"DJOB_PLUGINS",
};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
}

static void test_load_env_reads_prototype_names(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	clear_env();
	setenv("PORT", "5000", 1);
	setenv("MONGO_URI", "mongodb://db:27017/jobsdb", 1);
	setenv("KAFKA_BROKER", "kafka:9092", 1);
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_load_env(conf, &err), 0);
	CHECK_STR(djob_config_get(conf, "api.port"), "5000");
	CHECK_STR(djob_config_get(conf, "mongo.uri"), "mongodb://db:27017/jobsdb");
	CHECK_STR(djob_config_get(conf, "kafka.brokers"), "kafka:9092");
	CHECK_STR(djob_config_get(conf, "worker.port"), "4000");
	djob_config_free(conf);
	clear_env();
}

static void test_load_env_djob_names_win_over_prototype_names(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	clear_env();
	setenv("PORT", "5000", 1);
	setenv("DJOB_API_PORT", "6000", 1);
	setenv("MONGO_URI", "mongodb://old:27017/jobsdb", 1);
	setenv("DJOB_MONGO_URI", "mongodb://new:27017/jobsdb", 1);
	setenv("KAFKA_BROKER", "old:9092", 1);
	setenv("DJOB_KAFKA_BROKERS", "new1:9092,new2:9092", 1);
	setenv("DJOB_WORKER_PORT", "4100", 1);
	setenv("DJOB_GROUP_ID", "g2", 1);
	setenv("DJOB_CONCURRENCY", "16", 1);
	setenv("DJOB_LEASE_MS", "5000", 1);
	setenv("DJOB_MAX_ATTEMPTS", "7", 1);
	setenv("DJOB_API_TOKENS", "a:submit,b:worker", 1);
	setenv("DJOB_TOKEN", "b", 1);
	setenv("DJOB_SINK", "api", 1);
	setenv("DJOB_LOG_LEVEL", "debug", 1);
	setenv("DJOB_API_URL", "http://api:3000", 1);
	setenv("DJOB_BODY_MAX_BYTES", "2048", 1);
	setenv("DJOB_WORKER_ID", "w-1", 1);
	setenv("DJOB_TOPIC_PREFIX", "t.", 1);
	setenv("DJOB_API_LISTEN", "0.0.0.0", 1);
	setenv("DJOB_PLUGINS", "/a.so,/b.so", 1);
	setenv("DJOB_TYPES", "compute,video", 1);
	setenv("DJOB_TOPIC_PARTITIONS", "6", 1);
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_load_env(conf, &err), 0);
	CHECK_STR(djob_config_get(conf, "api.port"), "6000");
	CHECK_STR(djob_config_get(conf, "mongo.uri"), "mongodb://new:27017/jobsdb");
	CHECK_STR(djob_config_get(conf, "kafka.brokers"), "new1:9092,new2:9092");
	CHECK_STR(djob_config_get(conf, "worker.port"), "4100");
	CHECK_STR(djob_config_get(conf, "group.id"), "g2");
	CHECK_INT(djob_config_get_int(conf, "concurrency"), 16);
	CHECK_INT(djob_config_get_int(conf, "lease.ms"), 5000);
	CHECK_INT(djob_config_get_int(conf, "max.attempts"), 7);
	CHECK_STR(djob_config_get(conf, "api.tokens"), "a:submit,b:worker");
	CHECK_STR(djob_config_get(conf, "token"), "b");
	CHECK_STR(djob_config_get(conf, "worker.sink"), "api");
	CHECK_STR(djob_config_get(conf, "log.level"), "debug");
	CHECK_STR(djob_config_get(conf, "api.url"), "http://api:3000");
	CHECK_INT(djob_config_get_int(conf, "api.body.max.bytes"), 2048);
	CHECK_STR(djob_config_get(conf, "worker.id"), "w-1");
	CHECK_STR(djob_config_get(conf, "topic.prefix"), "t.");
	CHECK_STR(djob_config_get(conf, "api.listen"), "0.0.0.0");
	CHECK_STR(djob_config_get(conf, "worker.plugins"), "/a.so,/b.so");
	CHECK_STR(djob_config_get(conf, "types"), "compute,video");
	CHECK_STR(djob_config_get(conf, "topic.partitions"), "6");
	djob_config_free(conf);
	clear_env();
}

static void test_load_env_maps_djob_kafka_variables_to_properties(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;
	struct seen s = {{0}, 0};

	clear_env();
	setenv("DJOB_KAFKA_SASL_MECHANISMS", "SCRAM-SHA-512", 1);
	setenv("DJOB_KAFKA_BROKERS", "b:9092", 1);
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_load_env(conf, &err), 0);
	CHECK_STR(djob_config_get(conf, "kafka.sasl.mechanisms"), "SCRAM-SHA-512");
	CHECK_STR(djob_config_get(conf, "kafka.brokers"), "b:9092");
	djob_config_foreach_kafka(conf, collect, &s);
	CHECK_STR(s.text, "sasl.mechanisms=SCRAM-SHA-512;");
	djob_config_free(conf);
	clear_env();
}

static void test_load_env_refuses_a_bad_variable_naming_it(void)
{
	djob_config_t *conf = NULL;
	djob_error_t err;

	clear_env();
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	setenv("DJOB_GROUP_ID", "changed", 1);
	setenv("DJOB_CONCURRENCY", "lots", 1);
	CHECK_INT(djob_config_load_env(conf, &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "DJOB_CONCURRENCY") != NULL);
	/* all or nothing */
	CHECK_STR(djob_config_get(conf, "group.id"), "job-workers");
	unsetenv("DJOB_CONCURRENCY");

	setenv("PORT", "http", 1);
	CHECK_INT(djob_config_load_env(conf, &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "PORT") != NULL);
	unsetenv("PORT");

	setenv("DJOB_MONGO_URI", "postgres://x", 1);
	CHECK_INT(djob_config_load_env(conf, &err), DJOB_EINVAL);
	CHECK(strstr(err.message, "DJOB_MONGO_URI") != NULL);
	unsetenv("DJOB_MONGO_URI");

	/* empty variables count as unset */
	setenv("DJOB_API_PORT", "", 1);
	CHECK_INT(djob_config_load_env(conf, &err), 0);
	CHECK_STR(djob_config_get(conf, "api.port"), "3000");
	CHECK_STR(djob_config_get(conf, "group.id"), "changed");
	djob_config_free(conf);
	clear_env();
}

int main(void)
{
	RUN(test_new_config_holds_every_default);
	RUN(test_set_then_get_returns_the_value);
	RUN(test_set_pair_splits_at_the_first_equals_sign);
	RUN(test_log_level_key_sets_the_log_filter);
	RUN(test_invalid_values_are_refused_and_change_nothing);
	RUN(test_types_and_topic_partitions_are_checked);
	RUN(test_unknown_keys_are_refused_naming_the_key);
	RUN(test_kafka_properties_pass_through_in_order);
	RUN(test_load_env_reads_prototype_names);
	RUN(test_load_env_djob_names_win_over_prototype_names);
	RUN(test_load_env_maps_djob_kafka_variables_to_properties);
	RUN(test_load_env_refuses_a_bad_variable_naming_it);
	return check_report("unit_config");
}
