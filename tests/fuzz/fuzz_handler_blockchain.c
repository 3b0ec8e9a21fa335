/*
 * The example blockchain handler (examples/handler_blockchain.c) on fuzzed
 * payloads. The worker's stop flag is up, so a proof of work gives up
 * after its first 4096 tries (a difficulty of 24 would take seconds per
 * input). A completed job's answer is checked the long way: the hash is
 * sha256(data || nonce) with the leading zero bits asked for and tries is
 * nonce + 1; the Merkle root is recomputed level by level with fresh
 * buffers.
 */
#include "fuzz_handler.h"

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#if MBEDTLS_VERSION_MAJOR >= 3
#define sha256_once mbedtls_sha256
#else
#define sha256_once mbedtls_sha256_ret
#endif

djob_job_status_t blockchain_handler(djob_job_t *job, void *user_data);

static const atomic_int stop = 1;

static void to_hex(const unsigned char d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check_pow(const cJSON *payload, const cJSON *result)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(payload, "data");
	const cJSON *diff = cJSON_GetObjectItemCaseSensitive(payload, "difficulty");
	const cJSON *hash = cJSON_GetObjectItemCaseSensitive(result, "hash");
	double nonce = fuzz_number(result, "nonce"), tries = fuzz_number(result, "tries");
	FUZZ_ASSERT(cJSON_IsString(data) && cJSON_IsNumber(diff) && cJSON_IsString(hash));
	FUZZ_ASSERT(nonce >= 0 && nonce < 1e15 && tries == nonce + 1);

	size_t len = strlen(data->valuestring);
	char *msg = malloc(len + 32);
	FUZZ_ASSERT(msg != NULL);
	int n = snprintf(msg, len + 32, "%s%llu", data->valuestring, (unsigned long long)nonce);
	unsigned char d[32];
	char hex[65];
	sha256_once((const unsigned char *)msg, (size_t)n, d, 0);
	free(msg);
	to_hex(d, hex);
	FUZZ_ASSERT(strcmp(hex, hash->valuestring) == 0);
	int bits = 0;
	while (bits < 256 && !(d[bits / 8] & (0x80 >> (bits % 8))))
		bits++;
	FUZZ_ASSERT(bits >= diff->valuedouble);
}

static void check_merkle(const cJSON *payload, const cJSON *result)
{
	const cJSON *txs = cJSON_GetObjectItemCaseSensitive(payload, "transactions");
	const cJSON *root = cJSON_GetObjectItemCaseSensitive(result, "merkleRoot");
	int n = cJSON_GetArraySize(txs), i = 0;
	FUZZ_ASSERT(cJSON_IsString(root) && n > 0);
	unsigned char(*level)[32] = malloc((size_t)n * 32);
	FUZZ_ASSERT(level != NULL);
	const cJSON *tx;
	cJSON_ArrayForEach(tx, txs)
	{
		FUZZ_ASSERT(cJSON_IsString(tx));
		sha256_once((const unsigned char *)tx->valuestring, strlen(tx->valuestring),
		            level[i++], 0);
	}
	while (n > 1) {
		int m = (n + 1) / 2;
		unsigned char(*up)[32] = malloc((size_t)m * 32);
		FUZZ_ASSERT(up != NULL);
		for (int k = 0; k < m; k++) {
			unsigned char pair[64];
			memcpy(pair, level[2 * k], 32);
			memcpy(pair + 32, level[2 * k + 1 < n ? 2 * k + 1 : 2 * k], 32);
			sha256_once(pair, 64, up[k], 0);
		}
		free(level);
		level = up;
		n = m;
	}
	char hex[65];
	to_hex(level[0], hex);
	free(level);
	FUZZ_ASSERT(strcmp(hex, root->valuestring) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	djob_job_t *job = fuzz_job_new("blockchain", data, size, &stop);
	djob_job_status_t st = blockchain_handler(job, NULL);
	cJSON *result = fuzz_check_outcome(job, st);

	if (result != NULL) {
		cJSON *payload = cJSON_ParseWithLength(job->payload, job->payload_len);
		FUZZ_ASSERT(payload != NULL);
		if (cJSON_HasObjectItem(result, "hash") || cJSON_HasObjectItem(result, "nonce"))
			check_pow(payload, result);
		if (cJSON_HasObjectItem(result, "merkleRoot"))
			check_merkle(payload, result);
		FUZZ_ASSERT(cJSON_GetArraySize(result) > 0);
		cJSON_Delete(payload);
	}
	cJSON_Delete(result);
	djob_job_free(job);
	return 0;
}
