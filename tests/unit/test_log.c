/* Logging: level filter, callback, default JSON lines on stderr, errors. */
#include "check.h"
#include "djob_private.h"

#include <stdlib.h>
#include <unistd.h>

struct captured {
	int calls;
	djob_log_level_t level;
	char component[32];
	char message[2048];
};

static void capture(djob_log_level_t level, const char *component, const char *message,
                    void *opaque)
{
	struct captured *c = opaque;
	c->calls++;
	c->level = level;
	snprintf(c->component, sizeof(c->component), "%s", component);
	snprintf(c->message, sizeof(c->message), "%s", message);
}

static void test_events_at_or_below_the_level_reach_the_callback(void)
{
	djob_config_t *conf = NULL;
	struct captured c;

	memset(&c, 0, sizeof(c));
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	djob_config_set_log(conf, capture, DJOB_LOG_INFO, &c);
	djob_logf(conf, DJOB_LOG_INFO, "worker", "claimed %s attempt %d", "job-1", 2);
	CHECK_INT(c.calls, 1);
	CHECK_INT(c.level, DJOB_LOG_INFO);
	CHECK_STR(c.component, "worker");
	CHECK_STR(c.message, "claimed job-1 attempt 2");
	djob_logf(conf, DJOB_LOG_DEBUG, "worker", "too chatty");
	CHECK_INT(c.calls, 1);
	djob_logf(conf, DJOB_LOG_ERROR, "kafka", "down");
	CHECK_INT(c.calls, 2);
	CHECK_STR(c.component, "kafka");

	/* a NULL callback silences everything */
	djob_config_set_log(conf, NULL, DJOB_LOG_DEBUG, &c);
	djob_logf(conf, DJOB_LOG_ERROR, "kafka", "down");
	CHECK_INT(c.calls, 2);
	djob_config_free(conf);
}

static void test_long_messages_are_truncated_on_a_character_boundary(void)
{
	djob_config_t *conf = NULL;
	struct captured c;
	char *big = malloc(3001);

	/* 1000 three-byte characters: "€" is E2 82 AC */
	for (int i = 0; i < 1000; i++)
		memcpy(big + 3 * i, "\xe2\x82\xac", 3);
	big[3000] = '\0';
	memset(&c, 0, sizeof(c));
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	djob_config_set_log(conf, capture, DJOB_LOG_DEBUG, &c);
	djob_logf(conf, DJOB_LOG_INFO, "api", "%s", big);
	CHECK_INT(c.calls, 1);
	CHECK(strlen(c.message) < 1024);
	CHECK(strlen(c.message) > 1000);
	CHECK_INT(strlen(c.message) % 3, 0);
	CHECK(strncmp(c.message, big, strlen(c.message)) == 0);
	free(big);
	djob_config_free(conf);
}

/* Run fn with stderr redirected to a temporary file; return what it wrote. */
static char *capture_stderr(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *out = calloc(1, 4096);

	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	size_t n = fread(out, 1, 4095, tmp);
	out[n] = '\0';
	fclose(tmp);
	return out;
}

static void log_tricky_line(void)
{
	djob_log_json_stderr(DJOB_LOG_INFO, "worker", "say \"hi\"\n\tthen \\ leave", NULL);
}

static void log_without_config(void)
{
	djob_logf(NULL, DJOB_LOG_INFO, "api", "not shown");
	djob_logf(NULL, DJOB_LOG_WARNING, "api", "shown %d", 1);
}

static void test_default_callback_writes_one_escaped_json_object_per_line(void)
{
	char *out = capture_stderr(log_tricky_line);
	size_t len = strlen(out);
	cJSON *obj;
	const cJSON *ts;

	CHECK(len > 0 && out[len - 1] == '\n');
	CHECK(strchr(out, '\n') == out + len - 1);
	obj = cJSON_Parse(out);
	CHECK(cJSON_IsObject(obj));
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "level")), "info");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "component")), "worker");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(obj, "msg")),
	          "say \"hi\"\n\tthen \\ leave");
	ts = cJSON_GetObjectItem(obj, "ts");
	int64_t ms;
	CHECK(cJSON_IsString(ts) && strlen(ts->valuestring) == 24 &&
	      djob_parse_iso(ts->valuestring, &ms) == 0);
	cJSON_Delete(obj);
	free(out);
}

static void test_without_config_warnings_go_to_stderr(void)
{
	char *out = capture_stderr(log_without_config);

	CHECK(strstr(out, "not shown") == NULL);
	CHECK(strstr(out, "\"msg\":\"shown 1\"") != NULL);
	CHECK(strstr(out, "\"level\":\"warning\"") != NULL);
	free(out);
}

static void test_level_names(void)
{
	CHECK_STR(djob_log_level_name(DJOB_LOG_ERROR), "error");
	CHECK_STR(djob_log_level_name(DJOB_LOG_WARNING), "warning");
	CHECK_STR(djob_log_level_name(DJOB_LOG_INFO), "info");
	CHECK_STR(djob_log_level_name(DJOB_LOG_DEBUG), "debug");
}

int main(void)
{
	RUN(test_events_at_or_below_the_level_reach_the_callback);
	RUN(test_long_messages_are_truncated_on_a_character_boundary);
	RUN(test_default_callback_writes_one_escaped_json_object_per_line);
	RUN(test_without_config_warnings_go_to_stderr);
	RUN(test_level_names);
	return check_report("unit_log");
}
