/*
 * The Kafka message a worker receives (djob_job_from_message): djob's
 * format, keyed by the job id, and the Node.js prototype's, with no key and
 * the id in the value. An input that starts with "key:" carries the key on
 * that first line and the value after it; any other input is a value
 * without a key. A decoded job must hold a valid id and type and a payload
 * that is a JSON object, and the compute handler must run on it.
 */
#include "fuzz.h"

#include "djob_private.h"

#define KEY_PREFIX "key:"

static void check_job(const djob_job_t *job, const char *key, size_t key_len)
{
	FUZZ_ASSERT(djob_id_is_valid(job->id));
	if (key_len > 0)
		FUZZ_ASSERT(strlen(job->id) == key_len && memcmp(job->id, key, key_len) == 0);
	FUZZ_ASSERT(djob_type_is_valid(job->type));
	FUZZ_ASSERT(job->payload != NULL && strlen(job->payload) == job->payload_len);
	cJSON *payload = cJSON_ParseWithLength(job->payload, job->payload_len);
	FUZZ_ASSERT(cJSON_IsObject(payload));
	cJSON_Delete(payload);
	long long seq = atomic_load(&job->seq);
	FUZZ_ASSERT(seq == 0 || seq == -1);
	FUZZ_ASSERT(job->result == NULL && job->error == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *key = NULL, *value = (const char *)data;
	size_t key_len = 0, value_len = size;
	djob_job_t *job = NULL;
	djob_error_t err;

	if (size >= strlen(KEY_PREFIX) && memcmp(data, KEY_PREFIX, strlen(KEY_PREFIX)) == 0) {
		const char *nl = memchr(data, '\n', size);
		key = (const char *)data + strlen(KEY_PREFIX);
		key_len = nl ? (size_t)(nl - key) : size - strlen(KEY_PREFIX);
		value = nl ? nl + 1 : NULL;
		value_len = nl ? size - (size_t)(nl + 1 - (const char *)data) : 0;
	}
	memset(&err, 0, sizeof err);
	int rc = djob_job_from_message(&job, key, key_len, value, value_len, &err);
	if (rc != 0) {
		FUZZ_ASSERT(rc < 0 && job == NULL && err.code == rc);
		FUZZ_ASSERT(memchr(err.message, '\0', sizeof err.message) != NULL);
		FUZZ_ASSERT(err.message[0] != '\0');
		return 0;
	}
	FUZZ_ASSERT(job != NULL);
	check_job(job, key, key_len);
	/* What a worker does next for a compute job. */
	djob_job_status_t st = djob_handler_compute(job, NULL);
	if (st == DJOB_JOB_DONE) {
		cJSON *result = cJSON_Parse(djob_job_result(job));
		FUZZ_ASSERT(cJSON_IsObject(result));
		cJSON_Delete(result);
	} else {
		FUZZ_ASSERT(djob_job_error(job) != NULL);
	}
	djob_job_free(job);
	return 0;
}
