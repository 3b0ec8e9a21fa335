/*
 * The bodies of POST /jobs and PATCH /jobs/:id (request.h): structure from
 * json.c's cJSON tree, payloads and results from its BSON.
 */
#include "request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool type_known(const djob_config_t *conf, const char *type)
{
	const char *list = djob_config_get(conf, "types");
	if (!list)
		list = "compute,file,blockchain,data";
	size_t n = strlen(type);
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && strncmp(p, type, n) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

/* The document under `key` of doc (an object), viewed in place. */
static bool sub_document(const bson_t *doc, const char *key, bson_t *out)
{
	bson_iter_t it;
	const uint8_t *data;
	uint32_t len;
	if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
		return false;
	bson_iter_document(&it, &len, &data);
	return bson_init_static(out, data, len);
}

/* Whether the string under `key` of doc (the body's BSON, which keeps a
 * string's length) holds no U+0000: cJSON's valuestring stops at one, so
 * "compute\u0000x" would read as compute and two idempotency keys that
 * differ after a U+0000 as the same key. Not a string: true (the field's
 * own check refuses it). */
static bool no_nul(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	uint32_t len;
	if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it))
		return true;
	const char *v = bson_iter_utf8(&it, &len);
	return strlen(v) == len;
}

/* The first of `keys` whose string in doc holds a U+0000, or NULL. */
static const char *nul_field(const bson_t *doc, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!no_nul(doc, keys[i]))
			return keys[i];
	return NULL;
}

/* Characters (code points) of UTF-8 text, as JSON Schema's maxLength counts
 * them. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* An integer from lo to hi, as JSON numbers (doubles in cJSON) hold it. */
static bool int_in(const cJSON *v, double lo, double hi)
{
	return cJSON_IsNumber(v) && v->valuedouble >= lo && v->valuedouble <= hi &&
	       v->valuedouble == floor(v->valuedouble);
}

/* Validate one job object o (its BSON: job) into j. */
static int parse_job(const djob_config_t *conf, const cJSON *o, const bson_t *job,
                     bson_t *payload_out, djob_new_job_t *j, int64_t now, djob_error_t *err)
{
	if (!cJSON_IsObject(o))
		return djob_set_error(err, DJOB_EINVAL, 0, "Each job must be a JSON object");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
	const cJSON *payload = cJSON_GetObjectItemCaseSensitive(o, "payload");
	const cJSON *run_at = cJSON_GetObjectItemCaseSensitive(o, "runAt");
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(o, "maxAttempts");
	const cJSON *key = cJSON_GetObjectItemCaseSensitive(o, "idempotencyKey");
	memset(j, 0, sizeof *j);
	static const char *const strings[] = {"type", "runAt", "idempotencyKey"};
	const char *nul = nul_field(job, strings, sizeof strings / sizeof strings[0]);
	if (nul)
		return djob_set_error(err, DJOB_EINVAL, 0, "%s must not hold U+0000", nul);
	if (!cJSON_IsString(type) || !djob_type_is_valid(type->valuestring))
		return djob_set_error(err, DJOB_EINVAL, 0, "type must be a job type name");
	if (!type_known(conf, type->valuestring))
		return djob_set_error(err, DJOB_EINVAL, 0, "Unknown job type %s",
		                      type->valuestring);
	if (!cJSON_IsObject(payload) || !sub_document(job, "payload", payload_out))
		return djob_set_error(err, DJOB_EINVAL, 0, "payload must be a JSON object");
	int rc = djob_json_check_doc(payload_out, "payload", err);
	if (rc != 0)
		return rc;
	j->type = type->valuestring;
	j->payload = payload_out;
	j->created_ms = now;
	j->state = DJOB_STATE_QUEUED;
	j->max_attempts = (int)djob_config_get_int(conf, "max.attempts");
	if (max) {
		if (!int_in(max, 1, 1000))
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "maxAttempts must be an integer from 1 to 1000");
		j->max_attempts = (int)max->valuedouble;
	}
	if (run_at && !cJSON_IsNull(run_at)) {
		if (!cJSON_IsString(run_at) ||
		    djob_parse_iso(run_at->valuestring, &j->run_at_ms) != 0)
			return djob_set_error(err, DJOB_EINVAL, 0,
			                      "runAt must be an ISO-8601 date and time");
		if (j->run_at_ms > now)
			j->state = DJOB_STATE_SCHEDULED;
		else
			j->run_at_ms = 0;
	}
	if (key && !cJSON_IsNull(key)) {
		if (!cJSON_IsString(key) || !*key->valuestring ||
		    utf8_chars(key->valuestring) > DJOB_MAX_IDEMPOTENCY_KEY)
			return djob_set_error(
				err, DJOB_EINVAL, 0,
				"idempotencyKey must be a string of 1 to 200 characters");
		j->idempotency_key = key->valuestring;
	}
	djob_uuid_v4(j->id);
	return 0;
}

/* Render the job's Kafka message now, so that one too large for the
 * producer is refused before anything is stored. */
static int render_message(djob_new_job_t *j, char **message, size_t max_message, djob_error_t *err)
{
	*message = djob_new_job_to_json(j);
	if (!*message)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	size_t n = strlen(*message);
	if (max_message > 0 && n > max_message)
		return djob_set_error(err, DJOB_ETOOBIG, 0,
		                      "The job's Kafka message would be %zu bytes, over the "
		                      "producer's message.max.bytes of %zu",
		                      n, max_message);
	j->message = *message;
	j->message_len = n;
	return 0;
}

int djob_submission_parse(djob_submission_t **out, const djob_config_t *conf, size_t max_message,
                          const char *body, size_t len, const char *idempotency_key,
                          djob_error_t *err)
{
	*out = NULL;
	djob_submission_t *s = calloc(1, sizeof *s);
	if (!s)
		return djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	int rc = djob_json_parse(body, len, "Request body", &s->tree, &s->doc, err);
	size_t n = 0;
	if (rc == 0) {
		s->batch = cJSON_IsArray(s->tree);
		n = s->batch ? (size_t)cJSON_GetArraySize(s->tree) : 1;
		if (n == 0)
			rc = djob_set_error(err, DJOB_EINVAL, 0, "A batch needs at least one job");
		else if (n > DJOB_MAX_BATCH)
			rc = djob_set_error(err, DJOB_ETOOBIG, 0, "A batch holds at most %d jobs",
			                    DJOB_MAX_BATCH);
		else if (idempotency_key && s->batch)
			rc = djob_set_error(err, DJOB_EINVAL, 0,
			                    "The Idempotency-Key header applies to a single job");
		else if (idempotency_key && (!*idempotency_key || utf8_chars(idempotency_key) >
		                                                          DJOB_MAX_IDEMPOTENCY_KEY))
			rc = djob_set_error(err, DJOB_EINVAL, 0,
			                    "Idempotency-Key must hold 1 to 200 characters");
		/* A header's bytes are not checked by any JSON parser; a key that
		 * is not UTF-8 would be stored with its bad bytes replaced, so two
		 * such keys could meet as one. */
		else if (idempotency_key &&
		         !bson_utf8_validate(idempotency_key, strlen(idempotency_key), false))
			rc = djob_set_error(err, DJOB_EINVAL, 0,
			                    "Idempotency-Key must be UTF-8 text");
	}
	if (rc == 0) {
		s->jobs = calloc(n, sizeof *s->jobs);
		/* bson_t wants its 128-byte alignment, which calloc does not give. */
		s->payloads = aligned_alloc(BSON_ALIGNOF(bson_t), n * sizeof *s->payloads);
		s->messages = calloc(n, sizeof *s->messages);
		if (!s->jobs || !s->payloads || !s->messages)
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	}
	int64_t now = djob_now_ms();
	const cJSON *o = s->batch ? s->tree->child : s->tree;
	for (size_t i = 0; rc == 0 && i < n; i++, o = o->next) {
		bson_t item;
		const bson_t *job = s->doc;
		char key[24];
		snprintf(key, sizeof key, "%zu", i);
		if (s->batch)
			job = sub_document(s->doc, key, &item) ? &item : NULL;
		if (!job)
			rc = djob_set_error(err, DJOB_EINVAL, 0, "Each job must be a JSON object");
		else
			rc = parse_job(conf, o, job, &s->payloads[i], &s->jobs[i], now, err);
		if (rc == 0 && idempotency_key)
			s->jobs[i].idempotency_key = idempotency_key;
		if (rc == 0)
			rc = render_message(&s->jobs[i], &s->messages[i], max_message, err);
		s->n = i + 1;
	}
	if (rc != 0) {
		djob_submission_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void djob_submission_free(djob_submission_t *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->messages && i < s->n; i++)
		free(s->messages[i]);
	free(s->messages);
	free(s->payloads);
	free(s->jobs);
	if (s->doc)
		bson_destroy(s->doc);
	cJSON_Delete(s->tree);
	free(s);
}

int djob_patch_parse(djob_patch_t **out, const char *body, size_t len, djob_error_t *err)
{
	*out = NULL;
	cJSON *tree = NULL;
	bson_t *doc = NULL;
	int rc = djob_json_parse(body, len, "Request body", &tree, &doc, err);
	if (rc != 0)
		return rc;
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(tree, "status");
	const cJSON *result = cJSON_GetObjectItemCaseSensitive(tree, "result");
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(tree, "error");
	const cJSON *worker = cJSON_GetObjectItemCaseSensitive(tree, "workerId");
	const cJSON *attempts = cJSON_GetObjectItemCaseSensitive(tree, "attempts");
	const cJSON *lease = cJSON_GetObjectItemCaseSensitive(tree, "leaseMs");
	const cJSON *retry = cJSON_GetObjectItemCaseSensitive(tree, "retry");
	const cJSON *progress = cJSON_GetObjectItemCaseSensitive(tree, "progress");
	const cJSON *pvalue = cJSON_GetObjectItemCaseSensitive(progress, "value");
	const cJSON *pmessage = cJSON_GetObjectItemCaseSensitive(progress, "message");
	djob_state_t to =
		cJSON_IsString(status) ? djob_state_parse(status->valuestring) : DJOB_STATE_INVALID;
	bson_t res;
	static const char *const strings[] = {"status", "error", "workerId"};
	const char *nul = nul_field(doc, strings, sizeof strings / sizeof strings[0]);
	if (!cJSON_IsObject(tree))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "Request body must be a JSON object");
	else if (nul)
		rc = djob_set_error(err, DJOB_EINVAL, 0, "%s must not hold U+0000", nul);
	else if (to != DJOB_STATE_PROCESSING && to != DJOB_STATE_COMPLETED &&
	         to != DJOB_STATE_FAILED)
		rc = djob_set_error(err, DJOB_EINVAL, 0,
		                    "status must be one of processing, completed, failed");
	else if (result && (!cJSON_IsObject(result) || !sub_document(doc, "result", &res)))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "result must be a JSON object");
	else if (result && (rc = djob_json_check_doc(&res, "result", err)) != 0)
		;
	else if (error && !cJSON_IsString(error))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "error must be a string");
	else if (worker && (!cJSON_IsString(worker) || !*worker->valuestring ||
	                    utf8_chars(worker->valuestring) > 200))
		rc = djob_set_error(err, DJOB_EINVAL, 0,
		                    "workerId must be a string of 1 to 200 characters");
	else if (attempts && !int_in(attempts, 1, 1000000))
		rc = djob_set_error(err, DJOB_EINVAL, 0, "attempts must be a positive integer");
	else if (lease && !int_in(lease, 1000, 3600000))
		rc = djob_set_error(err, DJOB_EINVAL, 0,
		                    "leaseMs must be an integer from 1000 to 3600000");
	else if (retry &&
	         (!cJSON_IsBool(retry) ||
	          (cJSON_IsTrue(retry) && (to != DJOB_STATE_FAILED || !worker || !attempts))))
		rc = djob_set_error(err, DJOB_EINVAL, 0,
		                    "retry needs status failed with workerId and attempts");
	else if (progress && (to != DJOB_STATE_PROCESSING || !worker || !attempts))
		rc = djob_set_error(err, DJOB_EINVAL, 0,
		                    "progress needs status processing with workerId and attempts");
	else if (progress &&
	         (!cJSON_IsObject(progress) || !cJSON_IsNumber(pvalue) ||
	          !isfinite(pvalue->valuedouble) ||
	          cJSON_GetArraySize(progress) != (pmessage ? 2 : 1) ||
	          (pmessage && (!cJSON_IsString(pmessage) ||
	                        strlen(pmessage->valuestring) > DJOB_PROGRESS_MESSAGE_MAX))))
		rc = djob_set_error(
			err, DJOB_EINVAL, 0,
			"progress must be {\"value\": number, \"message\": string of at "
			"most 200 bytes}");
	djob_patch_t *p = NULL;
	if (rc == 0 && !(p = calloc(1, sizeof *p)))
		rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
	if (rc == 0) {
		p->to = to;
		p->attempts = attempts ? (int)attempts->valuedouble : 0;
		p->lease_ms = lease ? (long)lease->valuedouble : 0;
		p->retry = cJSON_IsTrue(retry);
		p->result = result ? bson_copy(&res) : NULL;
		p->error = error ? strdup(error->valuestring) : NULL;
		p->worker_id = worker ? strdup(worker->valuestring) : NULL;
		if (progress) {
			p->progress = bson_new();
			BSON_APPEND_DOUBLE(p->progress, "value", pvalue->valuedouble);
			if (pmessage)
				BSON_APPEND_UTF8(p->progress, "message", pmessage->valuestring);
		}
		if ((result && !p->result) || (error && !p->error) || (worker && !p->worker_id)) {
			djob_patch_free(p);
			p = NULL;
			rc = djob_set_error(err, DJOB_ENOMEM, 0, "Out of memory");
		}
	}
	cJSON_Delete(tree);
	bson_destroy(doc);
	*out = p;
	return rc;
}

void djob_patch_free(djob_patch_t *p)
{
	if (!p)
		return;
	if (p->result)
		bson_destroy(p->result);
	if (p->progress)
		bson_destroy(p->progress);
	free(p->error);
	free(p->worker_id);
	free(p);
}
