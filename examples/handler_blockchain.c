/*
 * The `blockchain` job handler, written as a user of libdjob would write one.
 *
 * Proof of work. Payload {"data": "<text>", "difficulty": n}, n an integer
 * from 0 to 24. Finds the smallest nonce (0, 1, 2, ...) such that
 * sha256(data followed by the nonce in decimal ASCII, no separator) starts
 * with at least n zero bits, reading the digest as a big-endian 256-bit
 * number. Result {"nonce": <n>, "hash": "<64 hex digits>", "tries": <n>}
 * where tries = nonce + 1 (hashes computed). data is hashed as its UTF-8
 * bytes after JSON unescaping. Difficulty 24 takes about 16 million hashes
 * (seconds); the handler polls djob_job_should_stop every 4096 tries and
 * gives the job back for a retry when asked to stop.
 *
 * Merkle root. Payload {"transactions": ["tx1", "tx2", ...]}, 1 to 100000
 * strings. Leaves are sha256(tx bytes). Each level pairs neighbours and
 * hashes the two raw 32-byte digests concatenated (left then right); an odd
 * last digest is paired with itself. The root of one transaction is its leaf.
 * This is Bitcoin's shape with a single sha256 (Bitcoin hashes twice), and
 * the hex is the digest's bytes in order (Bitcoin displays them reversed).
 * Result {"merkleRoot": "<64 hex digits>"}.
 *
 * A payload may ask for both; the result then has all four keys.
 *
 * Built twice (examples/meson.build): as the plugin djob-handler-blockchain.so
 * and linked into handlers_worker.
 */
#include <djob/djob.h>

#include <cjson/cJSON.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The project builds with -fvisibility=hidden; the plugin entry point and
 * the functions other programs link must stay visible. */
#define BLOCKCHAIN_EXPORT __attribute__((visibility("default")))

/* mbedTLS 2.x names the fallible SHA-256 calls *_ret; 3.x dropped the suffix. */
#if MBEDTLS_VERSION_MAJOR >= 3
#define sha256_starts mbedtls_sha256_starts
#define sha256_update mbedtls_sha256_update
#define sha256_finish mbedtls_sha256_finish
#define sha256_once mbedtls_sha256
#else
#define sha256_starts mbedtls_sha256_starts_ret
#define sha256_update mbedtls_sha256_update_ret
#define sha256_finish mbedtls_sha256_finish_ret
#define sha256_once mbedtls_sha256_ret
#endif

#define POW_MAX_DIFFICULTY 24
#define POW_POLL_EVERY 4096
#define MERKLE_MAX_TRANSACTIONS 100000

static void hex_of(const unsigned char digest[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0F];
	}
	out[64] = '\0';
}

/* Number of leading zero bits of a digest read as a big-endian number. */
static int leading_zero_bits(const unsigned char digest[32])
{
	int bits = 0;

	for (int i = 0; i < 32; i++) {
		if (digest[i] == 0) {
			bits += 8;
			continue;
		}
		for (unsigned char b = digest[i]; !(b & 0x80); b <<= 1)
			bits++;
		break;
	}
	return bits;
}

/*
 * Proof of work: the smallest nonce whose sha256(data || decimal nonce) has
 * `difficulty` leading zero bits (0..256; the handler bounds it to 24).
 * `job` (may be NULL) is polled every POW_POLL_EVERY tries. Returns 0 with
 * *nonce, hash and *tries set, or 1 when the job should stop.
 */
static int pow_search(const char *data, size_t len, int difficulty, const djob_job_t *job,
                      uint64_t *nonce, unsigned char hash[32], uint64_t *tries)
{
	mbedtls_sha256_context base, ctx;
	char digits[24];
	int rc = 1;

	/* Hash data once; each try continues from a copy of that state. */
	mbedtls_sha256_init(&base);
	mbedtls_sha256_init(&ctx);
	sha256_starts(&base, 0);
	sha256_update(&base, (const unsigned char *)data, len);
	for (uint64_t n = 0; n < UINT64_MAX; n++) {
		if (job && n % POW_POLL_EVERY == 0 && n > 0 && djob_job_should_stop(job))
			break;
		int k = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
		mbedtls_sha256_clone(&ctx, &base);
		sha256_update(&ctx, (const unsigned char *)digits, (size_t)k);
		sha256_finish(&ctx, hash);
		if (leading_zero_bits(hash) >= difficulty) {
			*nonce = n;
			*tries = n + 1;
			rc = 0;
			break;
		}
	}
	mbedtls_sha256_free(&ctx);
	mbedtls_sha256_free(&base);
	return rc;
}

/*
 * Merkle root of n >= 1 transactions (see the top of the file).
 * Returns 0, or -1 when out of memory.
 */
static int merkle_root(const char *const *txs, const size_t *lens, size_t n, unsigned char root[32])
{
	unsigned char(*level)[32] = malloc(n * sizeof *level);
	unsigned char pair[64];

	if (level == NULL || n == 0) {
		free(level);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		sha256_once((const unsigned char *)txs[i], lens[i], level[i], 0);
	/* Reduce in place: entry i of the next level only needs entries 2i and
	 * 2i+1 of this one, which are read before it is written. */
	while (n > 1) {
		size_t next = (n + 1) / 2;
		for (size_t i = 0; i < next; i++) {
			size_t right = 2 * i + 1 < n ? 2 * i + 1 : 2 * i;
			memcpy(pair, level[2 * i], 32);
			memcpy(pair + 32, level[right], 32);
			sha256_once(pair, sizeof pair, level[i], 0);
		}
		n = next;
	}
	memcpy(root, level[0], 32);
	free(level);
	return 0;
}

static djob_job_status_t fail_job(djob_job_t *job, cJSON *doc, cJSON *result, const char *msg,
                                  djob_job_status_t status)
{
	cJSON_Delete(doc);
	cJSON_Delete(result);
	djob_job_set_error(job, msg);
	return status;
}

/* Proof of work into result; FAIL, RETRY (stopped) or DONE. */
static djob_job_status_t do_pow(djob_job_t *job, const cJSON *doc, cJSON *result, char *msg,
                                size_t msgsize)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
	const cJSON *diff = cJSON_GetObjectItemCaseSensitive(doc, "difficulty");
	unsigned char hash[32];
	char hex[65];
	uint64_t nonce, tries;

	if (!cJSON_IsString(data)) {
		snprintf(msg, msgsize, "payload.data must be a string");
		return DJOB_JOB_FAIL;
	}
	if (!cJSON_IsNumber(diff) || diff->valuedouble != floor(diff->valuedouble) ||
	    diff->valuedouble < 0 || diff->valuedouble > POW_MAX_DIFFICULTY) {
		snprintf(msg, msgsize, "payload.difficulty must be an integer from 0 to %d",
		         POW_MAX_DIFFICULTY);
		return DJOB_JOB_FAIL;
	}
	if (pow_search(data->valuestring, strlen(data->valuestring), (int)diff->valuedouble, job,
	               &nonce, hash, &tries) != 0) {
		snprintf(msg, msgsize, "Stopped before a nonce was found");
		return DJOB_JOB_RETRY;
	}
	hex_of(hash, hex);
	cJSON_AddNumberToObject(result, "nonce", (double)nonce);
	cJSON_AddStringToObject(result, "hash", hex);
	cJSON_AddNumberToObject(result, "tries", (double)tries);
	return DJOB_JOB_DONE;
}

/* Merkle root into result; FAIL, RETRY (out of memory) or DONE. */
static djob_job_status_t do_merkle(const cJSON *txs, cJSON *result, char *msg, size_t msgsize)
{
	int n = cJSON_GetArraySize(txs);
	const cJSON *tx;
	int i = 0;

	if (!cJSON_IsArray(txs) || n == 0) {
		snprintf(msg, msgsize, "payload.transactions must be a non-empty array of strings");
		return DJOB_JOB_FAIL;
	}
	if (n > MERKLE_MAX_TRANSACTIONS) {
		snprintf(msg, msgsize, "payload.transactions has more than %d entries",
		         MERKLE_MAX_TRANSACTIONS);
		return DJOB_JOB_FAIL;
	}
	const char **texts = malloc((size_t)n * sizeof *texts);
	size_t *lens = malloc((size_t)n * sizeof *lens);
	djob_job_status_t st = DJOB_JOB_DONE;
	if (texts == NULL || lens == NULL) {
		snprintf(msg, msgsize, "Out of memory");
		st = DJOB_JOB_RETRY;
	}
	cJSON_ArrayForEach(tx, txs)
	{
		if (st != DJOB_JOB_DONE)
			break;
		if (!cJSON_IsString(tx)) {
			snprintf(msg, msgsize, "payload.transactions[%d] must be a string", i);
			st = DJOB_JOB_FAIL;
			break;
		}
		texts[i] = tx->valuestring;
		lens[i] = strlen(tx->valuestring);
		i++;
	}
	unsigned char root[32];
	char hex[65];
	if (st == DJOB_JOB_DONE && merkle_root(texts, lens, (size_t)n, root) != 0) {
		snprintf(msg, msgsize, "Out of memory");
		st = DJOB_JOB_RETRY;
	}
	if (st == DJOB_JOB_DONE) {
		hex_of(root, hex);
		cJSON_AddStringToObject(result, "merkleRoot", hex);
	}
	free(texts);
	free(lens);
	return st;
}

/* The handler. user_data is unused. */
BLOCKCHAIN_EXPORT djob_job_status_t blockchain_handler(djob_job_t *job, void *user_data)
{
	size_t len;
	const char *payload = djob_job_payload(job, &len);
	cJSON *doc = payload ? cJSON_ParseWithLength(payload, len) : NULL;
	cJSON *result = cJSON_CreateObject();
	const cJSON *txs = cJSON_GetObjectItemCaseSensitive(doc, "transactions");
	int want_pow = cJSON_HasObjectItem(doc, "data") || cJSON_HasObjectItem(doc, "difficulty");
	char msg[DJOB_ERROR_MESSAGE_MAX];
	djob_job_status_t st;

	(void)user_data;
	if (result == NULL)
		return fail_job(job, doc, result, "Out of memory", DJOB_JOB_RETRY);
	if (!want_pow && txs == NULL)
		return fail_job(job, doc, result,
		                "payload must hold data and difficulty (proof of work) or "
		                "transactions (Merkle root)",
		                DJOB_JOB_FAIL);
	/* Check the cheap part first: a bad transaction list fails at once. */
	if (txs && (st = do_merkle(txs, result, msg, sizeof msg)) != DJOB_JOB_DONE)
		return fail_job(job, doc, result, msg, st);
	if (want_pow && (st = do_pow(job, doc, result, msg, sizeof msg)) != DJOB_JOB_DONE)
		return fail_job(job, doc, result, msg, st);

	char *text = cJSON_PrintUnformatted(result);
	int rc = text ? djob_job_set_result(job, text, strlen(text), NULL) : DJOB_ENOMEM;
	cJSON_free(text);
	cJSON_Delete(result);
	cJSON_Delete(doc);
	if (rc != 0) {
		djob_job_set_error(job, "Out of memory");
		return DJOB_JOB_RETRY;
	}
	return DJOB_JOB_DONE;
}

/* Register `blockchain` on the worker. */
BLOCKCHAIN_EXPORT int blockchain_handler_register(djob_worker_t *worker, djob_error_t *err)
{
	return djob_worker_register(worker, "blockchain", blockchain_handler, NULL, err);
}

#ifndef HANDLER_NO_PLUGIN_ENTRY
/* The plugin ABI and entry point djob_worker_load_plugin looks for. */
DJOB_PLUGIN_ABI;

BLOCKCHAIN_EXPORT int djob_plugin_register(djob_worker_t *worker, djob_error_t *err)
{
	return blockchain_handler_register(worker, err);
}
#endif
