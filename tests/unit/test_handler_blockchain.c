/* The example blockchain handler (examples/handler_blockchain.c): proof of
 * work verified by recomputing hashes, Merkle roots computed independently,
 * bad payloads rejected. */
#include "check.h"
#include "djob_private.h"

#include "../../examples/handler_blockchain.c"

static djob_job_t *job_with_payload(const char *payload)
{
	djob_job_t *job = calloc(1, sizeof(*job));

	job->id = strdup("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f");
	job->type = strdup("blockchain");
	job->payload = strdup(payload);
	job->payload_len = strlen(payload);
	job->attempts = 1;
	job->max_attempts = 3;
	return job;
}

/* sha256 straight from mbedTLS, independent of the handler's code paths. */
static void sha(const void *data, size_t len, unsigned char out[32])
{
	if (sha256_once(data, len, out, 0) != 0)
		CHECK_FAIL_("sha256 failed");
}

static void sha_pair(const unsigned char a[32], const unsigned char b[32], unsigned char out[32])
{
	unsigned char buf[64];
	memcpy(buf, a, 32);
	memcpy(buf + 32, b, 32);
	sha(buf, 64, out);
}

/* Leading zero bits counted bit by bit, independently of leading_zero_bits. */
static int zero_bits_slow(const unsigned char d[32])
{
	int n = 0;
	while (n < 256 && !(d[n / 8] & (0x80 >> (n % 8))))
		n++;
	return n;
}

static void test_leading_zero_bits(void)
{
	unsigned char d[32] = {0};

	CHECK_INT(leading_zero_bits(d), 256);
	d[0] = 0x80;
	CHECK_INT(leading_zero_bits(d), 0);
	d[0] = 0x01;
	CHECK_INT(leading_zero_bits(d), 7);
	d[0] = 0;
	d[1] = 0x40;
	CHECK_INT(leading_zero_bits(d), 9);
	d[1] = 0;
	d[31] = 1;
	CHECK_INT(leading_zero_bits(d), 255);
}

/* Check a proof of work: the hash is sha256(data + nonce), has the zero
 * bits, and no smaller nonce has them. */
static void verify_pow(const char *data, int difficulty, uint64_t nonce, const unsigned char h[32])
{
	char buf[256];
	unsigned char d[32];

	snprintf(buf, sizeof buf, "%s%llu", data, (unsigned long long)nonce);
	sha(buf, strlen(buf), d);
	CHECK(memcmp(d, h, 32) == 0);
	CHECK(zero_bits_slow(d) >= difficulty);
	int smaller_found = 0;
	for (uint64_t n = 0; n < nonce && !smaller_found; n++) {
		snprintf(buf, sizeof buf, "%s%llu", data, (unsigned long long)n);
		sha(buf, strlen(buf), d);
		smaller_found = zero_bits_slow(d) >= difficulty;
	}
	CHECK(!smaller_found);
}

static void test_pow_finds_the_smallest_nonce_at_difficulty_8_and_16(void)
{
	unsigned char h[32];
	char hex[65];
	uint64_t nonce, tries;

	/* Expected values from Python: the first n with
	 * hashlib.sha256(("hello" + str(n)).encode()).digest() having the
	 * leading zero bits: 227 at difficulty 8, 60067 at 16. */
	CHECK_INT(pow_search("hello", 5, 8, NULL, &nonce, h, &tries), 0);
	CHECK_INT(nonce, 227);
	CHECK_INT(tries, 228);
	hex_of(h, hex);
	CHECK_STR(hex, "001b92541ed0a22b0cb89018b561d895503206c0082c0ecf2d0b7e5182191eed");
	verify_pow("hello", 8, nonce, h);

	CHECK_INT(pow_search("hello", 5, 16, NULL, &nonce, h, &tries), 0);
	CHECK_INT(nonce, 60067);
	CHECK_INT(tries, 60068);
	hex_of(h, hex);
	CHECK_STR(hex, "0000e49eab06aa7a6b3aef7708991b91a7e01451fd67f520b832b89b18f4e7de");
	verify_pow("hello", 16, nonce, h);

	/* Difficulty 0: the first try wins. */
	CHECK_INT(pow_search("hello", 5, 0, NULL, &nonce, h, &tries), 0);
	CHECK_INT(nonce, 0);
	CHECK_INT(tries, 1);
}

static void test_pow_handler_result(void)
{
	djob_job_t *job = job_with_payload("{\"data\":\"hello\",\"difficulty\":8}");

	CHECK_INT(blockchain_handler(job, NULL), DJOB_JOB_DONE);
	CHECK_STR(djob_job_result(job),
	          "{\"nonce\":227,\"hash\":"
	          "\"001b92541ed0a22b0cb89018b561d895503206c0082c0ecf2d0b7e5182191eed\","
	          "\"tries\":228}");
	djob_job_free(job);

	/* Python: hashlib.sha256(b"djob934") has 12 leading zero bits. */
	job = job_with_payload("{\"data\":\"djob\",\"difficulty\":12}");
	CHECK_INT(blockchain_handler(job, NULL), DJOB_JOB_DONE);
	CHECK(strstr(djob_job_result(job), "\"nonce\":934,") != NULL);
	djob_job_free(job);
}

static void test_pow_stops_when_asked(void)
{
	atomic_int stop = 1;
	djob_job_t *job = job_with_payload("{\"data\":\"x\",\"difficulty\":24}");

	job->stopping = &stop;
	CHECK_INT(blockchain_handler(job, NULL), DJOB_JOB_RETRY);
	CHECK_STR(djob_job_error(job), "Stopped before a nonce was found");
	CHECK(djob_job_result(job) == NULL);
	djob_job_free(job);
}

static void hex_root(const char *const *txs, size_t n, char hex[65])
{
	size_t lens[8];
	unsigned char root[32];

	for (size_t i = 0; i < n; i++)
		lens[i] = strlen(txs[i]);
	CHECK_INT(merkle_root(txs, lens, n, root), 0);
	hex_of(root, hex);
}

static void test_merkle_roots_of_one_to_four_transactions(void)
{
	static const char *txs[] = {"a", "b", "c", "d"};
	unsigned char a[32], b[32], c[32], d[32], ab[32], cc[32], cd[32], want[32];
	char hex[65], want_hex[65];

	sha("a", 1, a);
	sha("b", 1, b);
	sha("c", 1, c);
	sha("d", 1, d);
	sha_pair(a, b, ab);
	sha_pair(c, c, cc);
	sha_pair(c, d, cd);

	hex_root(txs, 1, hex); /* one: the leaf itself */
	hex_of(a, want_hex);
	CHECK_STR(hex, want_hex);

	hex_root(txs, 2, hex);
	hex_of(ab, want_hex);
	CHECK_STR(hex, want_hex);

	hex_root(txs, 3, hex); /* odd: c is paired with itself */
	sha_pair(ab, cc, want);
	hex_of(want, want_hex);
	CHECK_STR(hex, want_hex);
	/* Python, the same construction:
	 *   h = lambda b: hashlib.sha256(b).digest()
	 *   l = [h(t) for t in (b"a", b"b", b"c")]; l.append(l[-1])
	 *   h(h(l[0] + l[1]) + h(l[2] + l[3])).hex() */
	CHECK_STR(hex, "d31a37ef6ac14a2db1470c4316beb5592e6afd4465022339adafda76a18ffabe");

	hex_root(txs, 4, hex);
	sha_pair(ab, cd, want);
	hex_of(want, want_hex);
	CHECK_STR(hex, want_hex);
	CHECK_STR(hex, "14ede5e8e97ad9372327728f5099b95604a39593cac3bd38a343ad76205213e7");
}

static void test_merkle_handler_and_both_at_once(void)
{
	djob_job_t *job = job_with_payload("{\"transactions\":[\"a\",\"b\",\"c\"]}");

	CHECK_INT(blockchain_handler(job, NULL), DJOB_JOB_DONE);
	CHECK_STR(djob_job_result(job),
	          "{\"merkleRoot\":"
	          "\"d31a37ef6ac14a2db1470c4316beb5592e6afd4465022339adafda76a18ffabe\"}");
	djob_job_free(job);

	job = job_with_payload(
		"{\"data\":\"hello\",\"difficulty\":8,\"transactions\":[\"a\",\"b\",\"c\",\"d\"]}");
	CHECK_INT(blockchain_handler(job, NULL), DJOB_JOB_DONE);
	CHECK_STR(djob_job_result(job),
	          "{\"merkleRoot\":"
	          "\"14ede5e8e97ad9372327728f5099b95604a39593cac3bd38a343ad76205213e7\","
	          "\"nonce\":227,\"hash\":"
	          "\"001b92541ed0a22b0cb89018b561d895503206c0082c0ecf2d0b7e5182191eed\","
	          "\"tries\":228}");
	djob_job_free(job);
}

static void test_blockchain_bad_payloads_fail_clearly(void)
{
	static const struct {
		const char *payload, *error;
	} cases[] = {
		{"{}", "payload must hold data and difficulty (proof of work) or transactions "
	               "(Merkle root)"},
		{"{\"data\":\"x\",\"difficulty\":25}",
	         "payload.difficulty must be an integer from 0 to 24"},
		{"{\"data\":\"x\",\"difficulty\":-1}",
	         "payload.difficulty must be an integer from 0 to 24"},
		{"{\"data\":\"x\",\"difficulty\":8.5}",
	         "payload.difficulty must be an integer from 0 to 24"},
		{"{\"data\":\"x\",\"difficulty\":\"8\"}",
	         "payload.difficulty must be an integer from 0 to 24"},
		{"{\"data\":\"x\",\"difficulty\":1e999}",
	         "payload.difficulty must be an integer from 0 to 24"},
		{"{\"data\":\"x\"}", "payload.difficulty must be an integer from 0 to 24"},
		{"{\"difficulty\":8}", "payload.data must be a string"},
		{"{\"data\":42,\"difficulty\":8}", "payload.data must be a string"},
		{"{\"transactions\":[]}",
	         "payload.transactions must be a non-empty array of strings"},
		{"{\"transactions\":\"a\"}",
	         "payload.transactions must be a non-empty array of strings"},
		{"{\"transactions\":{\"a\":\"b\"}}",
	         "payload.transactions must be a non-empty array of strings"},
		{"{\"transactions\":[\"a\",1]}", "payload.transactions[1] must be a string"},
		{"{\"transactions\":[\"a\",\"b\",null]}",
	         "payload.transactions[2] must be a string"},
		{"{\"data\":\"x\",\"difficulty\":8,\"transactions\":[[]]}",
	         "payload.transactions[0] must be a string"},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		djob_job_t *job = job_with_payload(cases[i].payload);
		CHECK_INT(blockchain_handler(job, NULL), DJOB_JOB_FAIL);
		CHECK_STR(djob_job_error(job), cases[i].error);
		CHECK(djob_job_result(job) == NULL);
		djob_job_free(job);
	}
}

int main(void)
{
	RUN(test_leading_zero_bits);
	RUN(test_pow_finds_the_smallest_nonce_at_difficulty_8_and_16);
	RUN(test_pow_handler_result);
	RUN(test_pow_stops_when_asked);
	RUN(test_merkle_roots_of_one_to_four_transactions);
	RUN(test_merkle_handler_and_both_at_once);
	RUN(test_blockchain_bad_payloads_fail_clearly);
	return check_report("unit_handler_blockchain");
}
