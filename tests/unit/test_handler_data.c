/* The example data handler (examples/handler_data.c): statistics against
 * hand-computed values, and rejects. */
#include "check.h"
#include "djob_private.h"

/* A small cap, so the over-the-cap case stays cheap. */
#define DATA_MAX_VALUES 10
#include "../../examples/handler_data.c"

static djob_job_t *job_with_payload(const char *payload)
{
	djob_job_t *job = calloc(1, sizeof(*job));

	job->id = strdup("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f");
	job->type = strdup("data");
	job->payload = strdup(payload);
	job->payload_len = strlen(payload);
	job->attempts = 1;
	job->max_attempts = 3;
	return job;
}

#define CHECK_NEAR(actual, expected)                                                               \
	do {                                                                                       \
		double a_ = (actual), e_ = (expected);                                             \
		if (fabs(a_ - e_) <= 1e-12 * fmax(1, fabs(e_)))                                    \
			check_passed++;                                                            \
		else                                                                               \
			CHECK_FAIL_("%s is %.17g, expected %.17g", #actual, a_, e_);               \
	} while (0)

/* Run the handler and return the result's number `key`. */
static double result_number(const cJSON *result, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(result, key);
	CHECK(cJSON_IsNumber(v));
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

typedef struct {
	const char *payload;
	double count, sum, mean, min, max, stddev, p50, p90, p99;
} known_t;

/*
 * By hand (population stddev; percentiles with h = (n-1)p between ranks):
 * {15,20,35,40,50}: mean 160/5 = 32; squared deviations 289+144+9+64+324 =
 *   830, /5 = 166, stddev sqrt(166); p50 h=2 -> 35; p90 h=3.6 -> 40+0.6*10 =
 *   46; p99 h=3.96 -> 49.6. Given unsorted, the same.
 * {2,4,4,4,5,5,7,9}: mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, /8 =
 *   4, stddev 2; p50 h=3.5 -> 4.5; p90 h=6.3 -> 7+0.3*2 = 7.6; p99 h=6.93 ->
 *   8.86. (Python's statistics.quantiles(..., method="inclusive") agrees.)
 * {42}: everything 42, stddev 0.
 * {1e308,-1e308}: sum 0, stddev 1e308 (squares of 1e308 would overflow);
 *   p50 h=0.5 -> 0 (the neighbours' difference overflows).
 * {-1.5,0.25}: sum -1.25, mean -0.625, stddev 0.875; p90 h=0.9 ->
 *   -1.5+0.9*1.75 = 0.075.
 */
static const known_t known[] = {
	{"{\"values\":[15,20,35,40,50]}", 5, 160, 32, 15, 50, 12.884098726725126, 35, 46, 49.6},
	{"{\"values\":[50,15,40,20,35]}", 5, 160, 32, 15, 50, 12.884098726725126, 35, 46, 49.6},
	{"{\"values\":[2,4,4,4,5,5,7,9]}", 8, 40, 5, 2, 9, 2, 4.5, 7.6, 8.86},
	{"{\"values\":[42]}", 1, 42, 42, 42, 42, 0, 42, 42, 42},
	{"{\"values\":[1e308,-1e308]}", 2, 0, 0, -1e308, 1e308, 1e308, 0, 8e307, 9.8e307},
	{"{\"values\":[-1.5,0.25]}", 2, -1.25, -0.625, -1.5, 0.25, 0.875, -0.625, 0.075, 0.2325},
};

static void test_data_stats_match_hand_computed_values(void)
{
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
		const known_t *k = &known[i];
		djob_job_t *job = job_with_payload(k->payload);
		CHECK_INT(data_handler(job, NULL), DJOB_JOB_DONE);
		cJSON *r = cJSON_Parse(djob_job_result(job));
		CHECK(cJSON_IsObject(r));
		CHECK_NEAR(result_number(r, "count"), k->count);
		CHECK_NEAR(result_number(r, "sum"), k->sum);
		CHECK_NEAR(result_number(r, "mean"), k->mean);
		CHECK_NEAR(result_number(r, "min"), k->min);
		CHECK_NEAR(result_number(r, "max"), k->max);
		CHECK_NEAR(result_number(r, "stddev"), k->stddev);
		CHECK_NEAR(result_number(r, "p50"), k->p50);
		CHECK_NEAR(result_number(r, "p90"), k->p90);
		CHECK_NEAR(result_number(r, "p99"), k->p99);
		CHECK_INT(cJSON_GetArraySize(r), 9);
		cJSON_Delete(r);
		djob_job_free(job);
	}
}

static void test_data_result_text(void)
{
	djob_job_t *job = job_with_payload("{\"values\":[2,4,4,4,5,5,7,9]}");

	CHECK_INT(data_handler(job, NULL), DJOB_JOB_DONE);
	CHECK_STR(djob_job_result(job), "{\"count\":8,\"sum\":40,\"mean\":5,\"min\":2,\"max\":9,"
	                                "\"stddev\":2,\"p50\":4.5,\"p90\":7.6,\"p99\":8.86}");
	djob_job_free(job);
}

/* Found by tests/fuzz: cJSON's 15 digits turned 1.7976931348623157e308
 * into a number that reads back as infinity (and 0.1 + 0.2 into 0.3). */
static void test_data_numbers_read_back_exactly(void)
{
	char num[32];

	CHECK_INT(data_number(num, 1.7976931348623157e308), 0);
	CHECK_STR(num, "1.7976931348623157e+308");
	CHECK_INT(data_number(num, -1.7976931348623157e308), 0);
	CHECK_STR(num, "-1.7976931348623157e+308");
	CHECK_INT(data_number(num, 0.1 + 0.2), 0);
	CHECK_STR(num, "0.30000000000000004");
	CHECK_INT(data_number(num, 0.1), 0);
	CHECK_STR(num, "0.1");
	CHECK_INT(data_number(num, 5e-324), 0);
	CHECK_STR(num, "4.94065645841247e-324");
	CHECK_INT(data_number(num, -0.0), 0);
	CHECK_STR(num, "-0");
	CHECK_INT(data_number(num, 40), 0);
	CHECK_STR(num, "40");
	CHECK_INT(data_number(num, HUGE_VAL), -1);
	CHECK_INT(data_number(num, NAN), -1);
}

static void test_percentile_definition(void)
{
	double x[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

	/* n = 11: h = 10p, so percentiles land on ranks at multiples of 0.1. */
	CHECK_NEAR(percentile_sorted(x, 11, 0), 1);
	CHECK_NEAR(percentile_sorted(x, 11, 0.5), 6);
	CHECK_NEAR(percentile_sorted(x, 11, 0.9), 10);
	CHECK_NEAR(percentile_sorted(x, 11, 0.99), 10.9);
	CHECK_NEAR(percentile_sorted(x, 11, 1), 11);
	CHECK_NEAR(percentile_sorted(x, 2, 0.25), 1.25);
}

static void test_data_rejects_what_is_not_a_finite_number(void)
{
	static const struct {
		const char *payload, *error;
	} cases[] = {
		{"{}", "payload.values must be an array of numbers"},
		{"{\"values\":\"1,2\"}", "payload.values must be an array of numbers"},
		{"{\"values\":{\"a\":1}}", "payload.values must be an array of numbers"},
		{"{\"values\":null}", "payload.values must be an array of numbers"},
		{"{\"values\":[]}", "payload.values must not be empty"},
		{"{\"values\":[1,\"2\"]}", "payload.values[1] is not a finite number"},
		{"{\"values\":[1,2,null]}", "payload.values[2] is not a finite number"},
		{"{\"values\":[true]}", "payload.values[0] is not a finite number"},
		{"{\"values\":[[1]]}", "payload.values[0] is not a finite number"},
		{"{\"values\":[1,{\"v\":2}]}", "payload.values[1] is not a finite number"},
		{"{\"values\":[\"NaN\"]}", "payload.values[0] is not a finite number"},
		{"{\"values\":[0,\"Infinity\"]}", "payload.values[1] is not a finite number"},
		{"{\"values\":[0,\"-Infinity\"]}", "payload.values[1] is not a finite number"},
		{"{\"values\":[1e999]}", "payload.values[0] is not a finite number"},
		{"{\"values\":[1,2,-1e999]}", "payload.values[2] is not a finite number"},
		{"{\"values\":[1,2,3,4,5,6,7,8,9,10,11]}",
	         "payload.values has more than 10 numbers"},
		{"{\"values\":[1e308,1e308]}",
	         "The sum of payload.values is beyond the range of a double"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		djob_job_t *job = job_with_payload(cases[i].payload);
		CHECK_INT(data_handler(job, NULL), DJOB_JOB_FAIL);
		CHECK_STR(djob_job_error(job), cases[i].error);
		CHECK(djob_job_result(job) == NULL);
		djob_job_free(job);
	}

	/* At the cap is fine. */
	djob_job_t *job = job_with_payload("{\"values\":[1,2,3,4,5,6,7,8,9,10]}");
	CHECK_INT(data_handler(job, NULL), DJOB_JOB_DONE);
	djob_job_free(job);
}

int main(void)
{
	RUN(test_data_stats_match_hand_computed_values);
	RUN(test_data_result_text);
	RUN(test_data_numbers_read_back_exactly);
	RUN(test_percentile_definition);
	RUN(test_data_rejects_what_is_not_a_finite_number);
	return check_report("unit_handler_data");
}
