/*
 * The built-in compute handler: sha256 of payload.input.
 */
#include "djob_private.h"

#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>

void djob_sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[32];

	/* mbedTLS 2.28: cannot fail for SHA-256 in software. */
	mbedtls_sha256_ret(data, len, digest, 0);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0F];
	}
	out[64] = '\0';
}

djob_job_status_t djob_handler_compute(djob_job_t *job, void *user_data)
{
	const char *payload;
	size_t len;
	cJSON *root;
	const cJSON *input;
	char hex[65];
	char result[128];
	int n;

	(void)user_data;
	payload = djob_job_payload(job, &len);
	root = payload ? cJSON_ParseWithLength(payload, len) : NULL;
	input = cJSON_GetObjectItemCaseSensitive(root, "input");
	if (!cJSON_IsObject(root) || !cJSON_IsString(input)) {
		cJSON_Delete(root);
		djob_job_set_error(job, "payload.input must be a string");
		return DJOB_JOB_FAIL;
	}
	djob_sha256_hex(input->valuestring, strlen(input->valuestring), hex);
	cJSON_Delete(root);
	n = snprintf(result, sizeof(result), "{\"message\":\"Success\",\"value\":\"%s\"}", hex);
	if (n < 0 || (size_t)n >= sizeof(result) ||
	    djob_job_set_result(job, result, (size_t)n, NULL) != 0) {
		/* Only memory can run out here; another attempt may succeed. */
		djob_job_set_error(job, "Out of memory");
		return DJOB_JOB_RETRY;
	}
	return DJOB_JOB_DONE;
}
