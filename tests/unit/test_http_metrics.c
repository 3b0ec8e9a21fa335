/* The HTTP servers' helpers: Prometheus registry and exposition, label
 * escaping, librdkafka lag from statistics, query strings, constant-time
 * token comparison. */
#include "check.h"
#include "http_private.h"

#include <stdlib.h>

static void test_counters_gauges_histograms_render_as_prometheus_text(void)
{
	djob_metrics_t *m = djob_metrics_new();
	CHECK(m != NULL);
	CHECK_INT(djob_metrics_declare(m, "c_total", DJOB_METRIC_COUNTER, "A counter"), 0);
	CHECK_INT(djob_metrics_declare(m, "g", DJOB_METRIC_GAUGE, "A gauge"), 0);
	CHECK_INT(djob_metrics_declare(m, "h_seconds", DJOB_METRIC_HISTOGRAM, "A histogram"), 0);
	djob_metrics_add(m, "c_total", "type=\"compute\"", 1);
	djob_metrics_add(m, "c_total", "type=\"compute\"", 2);
	djob_metrics_add(m, "c_total", "type=\"data\"", 1);
	djob_metrics_add(m, "undeclared_total", "", 1);
	djob_metrics_set(m, "g", "", 7);
	djob_metrics_set(m, "g", "", 5);
	djob_metrics_observe(m, "h_seconds", "type=\"compute\"", 0.003);
	djob_metrics_observe(m, "h_seconds", "type=\"compute\"", 20);
	char *t = djob_metrics_render(m);
	CHECK(t != NULL);
	CHECK(strstr(t, "# HELP c_total A counter\n# TYPE c_total counter\n") != NULL);
	CHECK(strstr(t, "c_total{type=\"compute\"} 3\n") != NULL);
	CHECK(strstr(t, "c_total{type=\"data\"} 1\n") != NULL);
	CHECK(strstr(t, "undeclared") == NULL);
	CHECK(strstr(t, "# TYPE g gauge\ng 5\n") != NULL);
	CHECK(strstr(t, "h_seconds_bucket{type=\"compute\",le=\"0.001\"} 0\n") != NULL);
	CHECK(strstr(t, "h_seconds_bucket{type=\"compute\",le=\"0.005\"} 1\n") != NULL);
	CHECK(strstr(t, "h_seconds_bucket{type=\"compute\",le=\"30\"} 2\n") != NULL);
	CHECK(strstr(t, "h_seconds_bucket{type=\"compute\",le=\"+Inf\"} 2\n") != NULL);
	CHECK(strstr(t, "h_seconds_count{type=\"compute\"} 2\n") != NULL);
	CHECK(strstr(t, "h_seconds_sum{type=\"compute\"} 20.003") != NULL);
	free(t);
	djob_metrics_free(m);
	djob_metrics_free(NULL);
}

static void test_label_values_are_escaped(void)
{
	char out[32];
	djob_metrics_escape("a\"b\\c\nd", out, sizeof out);
	CHECK_STR(out, "a\\\"b\\\\c\\nd");
	djob_metrics_escape("0123456789abcdef", out, 8);
	CHECK(strlen(out) < 8);
}

static void test_consumer_lag_is_summed_over_real_partitions(void)
{
	const char *stats =
		"{\"topics\":{\"jobs.compute\":{\"partitions\":{"
		"\"0\":{\"consumer_lag\":3},\"1\":{\"consumer_lag\":-1},\"2\":{\"consumer_lag\":4},"
		"\"-1\":{\"consumer_lag\":100}}},"
		"\"jobs.data\":{\"partitions\":{\"0\":{\"consumer_lag\":1}}}}}";
	CHECK_INT(djob_kafka_stats_consumer_lag(stats, strlen(stats)), 8);
	const char *none = "{\"topics\":{\"t\":{\"partitions\":{\"0\":{\"consumer_lag\":-1}}}}}";
	CHECK_INT(djob_kafka_stats_consumer_lag(none, strlen(none)), -1);
	CHECK_INT(djob_kafka_stats_consumer_lag("not json", 8), -1);
}

static void test_query_values_are_found_and_decoded(void)
{
	char *v = djob_http_query("status=queued&type=compute&limit=5", "type");
	CHECK_STR(v, "compute");
	free(v);
	v = djob_http_query("after=1%2D2+3&x=%zz", "after");
	CHECK_STR(v, "1-2 3");
	free(v);
	v = djob_http_query("x=%zz%4", "x");
	CHECK_STR(v, "%zz%4");
	free(v);
	CHECK(djob_http_query("types=a", "type") == NULL);
	CHECK(djob_http_query(NULL, "type") == NULL);
	v = djob_http_query("type=", "type");
	CHECK_STR(v, "");
	free(v);
}

static void test_tokens_compare_by_content_and_length(void)
{
	CHECK(djob_http_const_eq("secret", 6, "secret", 6));
	CHECK(!djob_http_const_eq("secret", 6, "secreT", 6));
	CHECK(!djob_http_const_eq("secret", 6, "secret2", 7));
	CHECK(!djob_http_const_eq("", 0, "x", 1));
	CHECK(djob_http_const_eq("", 0, "", 0));
}

static void test_tokens_with_unknown_roles_are_refused(void)
{
	djob_config_t *conf;
	djob_http_t h;
	djob_error_t err;
	CHECK_INT(djob_config_new(&conf, NULL), 0);
	CHECK_INT(djob_config_set(conf, "api.tokens", "a:submit,b:worker,c:admin", NULL), 0);
	CHECK_INT(djob_http_init(&h, conf, "test", &err), 0);
	CHECK_INT(h.ntokens, 3);
	CHECK_INT(h.tokens[0].perms, DJOB_PERM_SUBMIT | DJOB_PERM_READ);
	CHECK_INT(h.tokens[1].perms, DJOB_PERM_UPDATE | DJOB_PERM_READ);
	CHECK(h.tokens[2].perms & DJOB_PERM_ADMIN);
	djob_http_cleanup(&h);
	const char *bad[] = {"a:root", "a", ":submit", "a:submit,b"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		CHECK_INT(djob_config_set(conf, "api.tokens", bad[i], NULL), 0);
		CHECK_INT(djob_http_init(&h, conf, "test", &err), DJOB_EINVAL);
	}
	djob_config_free(conf);
}

int main(void)
{
	RUN(test_counters_gauges_histograms_render_as_prometheus_text);
	RUN(test_label_values_are_escaped);
	RUN(test_consumer_lag_is_summed_over_real_partitions);
	RUN(test_query_values_are_found_and_decoded);
	RUN(test_tokens_compare_by_content_and_length);
	RUN(test_tokens_with_unknown_roles_are_refused);
	return check_report("unit_http_metrics");
}
