/*
 * The example data handler (examples/handler_data.c) on fuzzed payloads.
 * A completed job's statistics must be numbers (cJSON prints a NaN or an
 * infinity as null) in their order: min <= p50 <= p90 <= p99 <= max, the
 * mean between min and max (up to rounding), stddev >= 0, and count the
 * number of values. Whether every number survives djob_job_set_result
 * (1.7976931348623157e308 read back as infinity, rendered null) is the
 * JSON layer's business: checked with fuzz_json_checks().
 */
#include "fuzz_handler.h"

#include <math.h>

djob_job_status_t data_handler(djob_job_t *job, void *user_data);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	djob_job_t *job = fuzz_job_new("data", data, size, NULL);
	djob_job_status_t st = data_handler(job, NULL);
	cJSON *result = fuzz_check_outcome(job, st);

	if (result != NULL && !fuzz_json_checks()) {
		/* Only results whose numbers read back as finite numbers. */
		const char *names[] = {"count",  "sum", "mean", "min", "max",
		                       "stddev", "p50", "p90",  "p99"};
		for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
			const cJSON *v = cJSON_GetObjectItemCaseSensitive(result, names[i]);
			if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
				cJSON_Delete(result);
				result = NULL;
				break;
			}
		}
	}
	if (result != NULL) {
		cJSON *payload = cJSON_ParseWithLength(job->payload, job->payload_len);
		const cJSON *values = cJSON_GetObjectItemCaseSensitive(payload, "values");
		double count = fuzz_number(result, "count"), min = fuzz_number(result, "min"),
		       max = fuzz_number(result, "max"), mean = fuzz_number(result, "mean"),
		       p50 = fuzz_number(result, "p50"), p90 = fuzz_number(result, "p90"),
		       p99 = fuzz_number(result, "p99"), sd = fuzz_number(result, "stddev");
		fuzz_number(result, "sum");
		FUZZ_ASSERT(count == cJSON_GetArraySize(values));
		FUZZ_ASSERT(min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max);
		double slack = 1e-12 * (fabs(min) > fabs(max) ? fabs(min) : fabs(max));
		FUZZ_ASSERT(mean >= min - slack && mean <= max + slack);
		FUZZ_ASSERT(sd >= 0);
		cJSON_Delete(payload);
	}
	cJSON_Delete(result);
	djob_job_free(job);
	return 0;
}
