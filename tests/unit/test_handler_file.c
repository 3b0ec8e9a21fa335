/* The example file handler (examples/handler_file.c): sha256, size and lines
 * of files under a root; escapes and missing files rejected. */
#include "check.h"
#include "djob_private.h"

#include "../../examples/handler_file.c"

#include <sys/stat.h>
#include <sys/types.h>

static char base[PATH_MAX]; /* a temp dir holding root/ and files outside it */
static char root[PATH_MAX]; /* base/root, resolved */

static djob_job_t *job_with_payload(const char *payload)
{
	djob_job_t *job = calloc(1, sizeof(*job));

	job->id = strdup("3f2b8c1e-9d4a-4b7e-8c2f-1a2b3c4d5e6f");
	job->type = strdup("file");
	job->payload = strdup(payload);
	job->payload_len = strlen(payload);
	job->attempts = 1;
	job->max_attempts = 3;
	return job;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (f) {
		CHECK_INT(fwrite(data, 1, len, f), len);
		fclose(f);
	}
}

static void in_dir(char *out, size_t size, const char *dir, const char *name)
{
	snprintf(out, size, "%s/%s", dir, name);
}

/* base/root/{sub/hello.txt, empty.txt, one.txt, big.bin, links}, base/secret.txt,
 * base/root-other/x.txt */
static void make_tree(void)
{
	char tmpl[] = "/tmp/djob-file-test-XXXXXX", p[PATH_MAX + 64], q[PATH_MAX + 64];

	CHECK(mkdtemp(tmpl) != NULL);
	CHECK(realpath(tmpl, base) != NULL);
	in_dir(p, sizeof p, base, "root");
	CHECK_INT(mkdir(p, 0755), 0);
	CHECK(realpath(p, root) != NULL);
	in_dir(p, sizeof p, root, "sub");
	CHECK_INT(mkdir(p, 0755), 0);
	in_dir(p, sizeof p, base, "root-other");
	CHECK_INT(mkdir(p, 0755), 0);

	write_file(root, "sub/hello.txt", "hello\nworld\nno newline at end", 29);
	write_file(root, "empty.txt", "", 0);
	write_file(root, "one.txt", "a\n", 2);
	write_file(base, "secret.txt", "secret\n", 7);
	write_file(base, "root-other/x.txt", "x\n", 2);

	/* Symlinks inside the root: one to a file inside, others leading out. */
	in_dir(p, sizeof p, root, "in");
	CHECK_INT(symlink("sub/hello.txt", p), 0);
	in_dir(p, sizeof p, root, "out");
	CHECK_INT(symlink("../secret.txt", p), 0);
	in_dir(p, sizeof p, root, "abs");
	in_dir(q, sizeof q, base, "secret.txt");
	CHECK_INT(symlink(q, p), 0);
	in_dir(p, sizeof p, root, "outdir");
	CHECK_INT(symlink(base, p), 0);
	/* base/root-other starts with base/root: only the trailing '/' tells. */
	in_dir(p, sizeof p, root, "sibling");
	CHECK_INT(symlink("../root-other/x.txt", p), 0);
	in_dir(p, sizeof p, root, "fifo");
	CHECK_INT(mkfifo(p, 0644), 0);
}

static void remove_tree(void)
{
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	CHECK_INT(system(cmd), 0);
}

/* Run the handler on root with a payload; returns the status. */
static djob_job_status_t run(const char *payload, djob_job_t **out)
{
	djob_job_t *job = job_with_payload(payload);
	djob_job_status_t st = file_handler(job, root);
	*out = job;
	return st;
}

static void test_file_sha256_size_and_lines_of_known_files(void)
{
	djob_job_t *job;

	/* Expected values from Python:
	 *   hashlib.sha256(b"hello\nworld\nno newline at end").hexdigest() */
	CHECK_INT(run("{\"path\":\"sub/hello.txt\"}", &job), DJOB_JOB_DONE);
	CHECK_STR(
		djob_job_result(job),
		"{\"sha256\":\"6d125be2c7b7d912ce6250e071724074606f8b0842c023a4075fd01f96b0f8f3\","
		"\"size\":29,\"lines\":3}");
	djob_job_free(job);

	CHECK_INT(run("{\"path\":\"empty.txt\"}", &job), DJOB_JOB_DONE);
	CHECK_STR(
		djob_job_result(job),
		"{\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
		"\"size\":0,\"lines\":0}");
	djob_job_free(job);

	CHECK_INT(run("{\"path\":\"one.txt\"}", &job), DJOB_JOB_DONE);
	CHECK(strstr(djob_job_result(job), "\"size\":2,\"lines\":1}") != NULL);
	djob_job_free(job);

	/* "./", "//" and ".." that stays inside are fine; so is a symlink to
	 * a file inside the root. */
	static const char *same[] = {"{\"path\":\"./sub//hello.txt\"}",
	                             "{\"path\":\"sub/../sub/hello.txt\"}", "{\"path\":\"in\"}"};
	for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
		CHECK_INT(run(same[i], &job), DJOB_JOB_DONE);
		CHECK(djob_job_result(job) &&
		      strstr(djob_job_result(job), "6d125be2c7b7d912") != NULL);
		djob_job_free(job);
	}
}

static void test_file_bigger_than_a_chunk_is_streamed(void)
{
	enum {
		SIZE = 3 * FILE_CHUNK + 1234
	};
	char *data = malloc(SIZE), hex[65], expected[160];
	djob_job_t *job;

	for (size_t i = 0; i < SIZE; i++)
		data[i] = i % 100 == 99 ? '\n' : (char)('a' + i % 26);
	write_file(root, "big.txt", data, SIZE);
	djob_sha256_hex(data, SIZE, hex); /* libdjob's one-shot sha256 */
	/* SIZE / 100 newlines, and a last line without one. */
	snprintf(expected, sizeof expected, "{\"sha256\":\"%s\",\"size\":%d,\"lines\":%d}", hex,
	         SIZE, SIZE / 100 + 1);
	CHECK_INT(run("{\"path\":\"big.txt\"}", &job), DJOB_JOB_DONE);
	CHECK_STR(djob_job_result(job), expected);
	djob_job_free(job);

	/* A job asked to stop gives the file back after one chunk. */
	atomic_int stop = 1;
	job = job_with_payload("{\"path\":\"big.txt\"}");
	job->stopping = &stop;
	CHECK_INT(file_handler(job, root), DJOB_JOB_RETRY);
	CHECK_STR(djob_job_error(job), "Stopped before the file was read to the end");
	djob_job_free(job);
	free(data);
}

static void test_file_paths_leaving_the_root_are_rejected(void)
{
	static const struct {
		const char *payload, *error;
	} cases[] = {
		{"{\"path\":\"../secret.txt\"}",
	         "payload.path leaves the file root: ../secret.txt"},
		{"{\"path\":\"sub/../../secret.txt\"}",
	         "payload.path leaves the file root: sub/../../secret.txt"},
		{"{\"path\":\"..\"}", "payload.path leaves the file root: .."},
		{"{\"path\":\"../root/sub/hello.txt\"}",
	         "payload.path leaves the file root: ../root/sub/hello.txt"},
		{"{\"path\":\"/etc/passwd\"}",
	         "payload.path must be relative to the file root: /etc/passwd"},
		{"{\"path\":\"out\"}", "payload.path leaves the file root: out"},
		{"{\"path\":\"abs\"}", "payload.path leaves the file root: abs"},
		{"{\"path\":\"outdir/secret.txt\"}",
	         "payload.path leaves the file root: outdir/secret.txt"},
		{"{\"path\":\"sibling\"}", "payload.path leaves the file root: sibling"},
	};
	djob_job_t *job;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_INT(run(cases[i].payload, &job), DJOB_JOB_FAIL);
		CHECK_STR(djob_job_error(job), cases[i].error);
		CHECK(djob_job_result(job) == NULL);
		djob_job_free(job);
	}

	/* An absolute path is refused even when it names a file inside. */
	char payload[PATH_MAX + 32];
	snprintf(payload, sizeof payload, "{\"path\":\"%s/sub/hello.txt\"}", root);
	CHECK_INT(run(payload, &job), DJOB_JOB_FAIL);
	CHECK(strncmp(djob_job_error(job), "payload.path must be relative to the file root: /",
	              49) == 0);
	djob_job_free(job);
}

static void test_file_missing_or_not_regular_fails_clearly(void)
{
	static const struct {
		const char *payload, *error;
	} cases[] = {
		{"{\"path\":\"sub/nope.txt\"}", "File not found: sub/nope.txt"},
		{"{\"path\":\"nodir/nope.txt\"}", "File not found: nodir/nope.txt"},
		{"{\"path\":\"one.txt/x\"}", "File not found: one.txt/x"},
		{"{\"path\":\"sub\"}", "payload.path is not a regular file: sub"},
		{"{\"path\":\".\"}", "payload.path is not a regular file: ."},
		{"{\"path\":\"fifo\"}", "payload.path is not a regular file: fifo"},
		{"{\"path\":\"\"}", "payload.path must not be empty"},
		{"{\"path\":42}", "payload.path must be a string"},
		{"{\"path\":null}", "payload.path must be a string"},
		{"{}", "payload.path must be a string"},
	};
	djob_job_t *job;

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_INT(run(cases[i].payload, &job), DJOB_JOB_FAIL);
		CHECK_STR(djob_job_error(job), cases[i].error);
		djob_job_free(job);
	}
}

static void test_file_register_needs_a_root_directory(void)
{
	djob_config_t *conf;
	djob_worker_t *w;
	djob_error_t err;
	char p[PATH_MAX + 64];

	CHECK_INT(djob_config_new(&conf, &err), 0);
	CHECK_INT(djob_worker_new(&w, conf, &err), 0);
	CHECK_INT(file_handler_register(w, NULL, &err), DJOB_EINVAL);
	CHECK_STR(err.message,
	          "DJOB_FILE_ROOT is not set: the file handler needs a root directory");
	in_dir(p, sizeof p, base, "secret.txt");
	CHECK_INT(file_handler_register(w, p, &err), DJOB_EINVAL);
	CHECK_STR(err.message, "The file root DJOB_FILE_ROOT is not a directory");
	in_dir(p, sizeof p, base, "missing");
	CHECK_INT(file_handler_register(w, p, &err), DJOB_EINVAL);
	CHECK_STR(err.message, "The file root DJOB_FILE_ROOT does not exist");

	/* The plugin entry point reads DJOB_FILE_ROOT. */
	in_dir(p, sizeof p, base, "root/../root");
	setenv("DJOB_FILE_ROOT", p, 1);
	CHECK_INT(djob_plugin_register(w, &err), 0);
	CHECK_STR(file_root, root);
	djob_worker_free(w);
	djob_config_free(conf);
}

int main(void)
{
	make_tree();
	RUN(test_file_sha256_size_and_lines_of_known_files);
	RUN(test_file_bigger_than_a_chunk_is_streamed);
	RUN(test_file_paths_leaving_the_root_are_rejected);
	RUN(test_file_missing_or_not_regular_fails_clearly);
	RUN(test_file_register_needs_a_root_directory);
	remove_tree();
	return check_report("unit_handler_file");
}
