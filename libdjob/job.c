/*
 * Job states, ids, and the job object handed to handlers.
 */
#include "djob_private.h"
#include "json.h"

#include <bson/bson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DJOB_TYPE_MAX 64

static const char *const state_names[] = {"queued", "scheduled", "processing", "completed",
                                          "failed", "cancelled", "quarantined"};

#define N_STATES ((int)(sizeof(state_names) / sizeof(state_names[0])))

#define S(x) (1u << DJOB_STATE_##x)

/* The state machine of DESIGN.md §3, as the moves a job can make: the one
 * table both djob_state_can_transition and the store's conditional writes
 * (which states a write may leave from, which it leads to) are read from. */
static const struct {
	unsigned from;
	djob_state_t to;
} moves[] = {
	[DJOB_MOVE_CLAIM] = {S(QUEUED), DJOB_STATE_PROCESSING},
	[DJOB_MOVE_TAKE_OVER] = {S(PROCESSING), DJOB_STATE_PROCESSING}, /* expired lease */
	[DJOB_MOVE_EXTEND] = {S(PROCESSING), DJOB_STATE_PROCESSING},
	[DJOB_MOVE_COMPLETE] = {S(PROCESSING), DJOB_STATE_COMPLETED},
	[DJOB_MOVE_RESCHEDULE] = {S(PROCESSING), DJOB_STATE_SCHEDULED}, /* retry later */
	[DJOB_MOVE_FAIL] = {S(PROCESSING), DJOB_STATE_FAILED},
	[DJOB_MOVE_CANCEL] = {S(QUEUED) | S(SCHEDULED) | S(PROCESSING) | S(QUARANTINED),
	                      DJOB_STATE_CANCELLED},
	[DJOB_MOVE_DUE] = {S(SCHEDULED), DJOB_STATE_QUEUED},
	[DJOB_MOVE_EXPIRE] = {S(PROCESSING), DJOB_STATE_QUEUED}, /* expired lease */
	[DJOB_MOVE_RETRY] = {S(FAILED) | S(CANCELLED) | S(QUARANTINED), DJOB_STATE_QUEUED},
	[DJOB_MOVE_QUARANTINE] = {S(PROCESSING), DJOB_STATE_QUARANTINED}, /* its worker died */
};

#undef S
#define N_MOVES ((int)(sizeof(moves) / sizeof(moves[0])))

unsigned djob_move_from(djob_move_t move)
{
	return (int)move >= 0 && (int)move < N_MOVES ? moves[move].from : 0;
}

djob_state_t djob_move_to(djob_move_t move)
{
	return (int)move >= 0 && (int)move < N_MOVES ? moves[move].to : DJOB_STATE_INVALID;
}

const char *djob_state_name(djob_state_t state)
{
	if ((int)state < 0 || (int)state >= N_STATES)
		return NULL;
	return state_names[state];
}

djob_state_t djob_state_parse(const char *name)
{
	if (name == NULL)
		return DJOB_STATE_INVALID;
	for (int i = 0; i < N_STATES; i++)
		if (strcmp(name, state_names[i]) == 0)
			return (djob_state_t)i;
	return DJOB_STATE_INVALID;
}

int djob_state_is_terminal(djob_state_t state)
{
	return state == DJOB_STATE_COMPLETED || state == DJOB_STATE_FAILED ||
	       state == DJOB_STATE_CANCELLED;
}

int djob_state_can_transition(djob_state_t from, djob_state_t to)
{
	if ((int)from < 0 || (int)from >= N_STATES)
		return 0;
	for (int m = 0; m < N_MOVES; m++)
		if ((moves[m].from & (1u << from)) && moves[m].to == to)
			return 1;
	return 0;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int djob_id_is_valid(const char *id)
{
	if (id == NULL)
		return 0;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (id[i] != '-')
				return 0;
		} else if (!is_hex(id[i])) {
			return 0; /* also stops at a NUL before 36 characters */
		}
	}
	return id[36] == '\0';
}

int djob_type_is_valid(const char *type)
{
	size_t n = 0;

	if (type == NULL)
		return 0;
	for (; type[n] != '\0'; n++) {
		char c = type[n];
		if (n >= DJOB_TYPE_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return n > 0;
}

const char *djob_job_id(const djob_job_t *job)
{
	return job ? job->id : NULL;
}

const char *djob_job_type(const djob_job_t *job)
{
	return job ? job->type : NULL;
}

const char *djob_job_payload(const djob_job_t *job, size_t *len)
{
	if (job == NULL) {
		if (len != NULL)
			*len = 0;
		return NULL;
	}
	if (len != NULL)
		*len = job->payload_len;
	return job->payload;
}

int djob_job_attempts(const djob_job_t *job)
{
	return job ? job->attempts : 0;
}

int djob_job_max_attempts(const djob_job_t *job)
{
	return job ? job->max_attempts : 0;
}

const char *djob_job_worker_id(const djob_job_t *job)
{
	return job ? job->worker_id : NULL;
}

const char *djob_job_result(const djob_job_t *job)
{
	return job ? job->result : NULL;
}

const char *djob_job_error(const djob_job_t *job)
{
	return job ? job->error : NULL;
}

int djob_job_set_result(djob_job_t *job, const char *json, size_t len, djob_error_t *err)
{
	if (job == NULL || json == NULL)
		return djob_set_error(err, DJOB_EINVAL, 0, "Job or result is NULL");
	/* The same checks as a payload's: a result refused here fails the
	 * job (the worker reads result_error) rather than being stored. */
	djob_error_t e;
	cJSON *tree = NULL;
	bson_t *doc = NULL;
	int rc = djob_json_parse(json, len, "Result", &tree, &doc, &e);
	if (rc == 0 && !cJSON_IsObject(tree))
		rc = djob_set_error(&e, DJOB_EINVAL, 0, "Result is not a JSON object");
	cJSON_Delete(tree);
	if (rc == 0)
		rc = djob_json_check_doc(doc, "result", &e);
	char *text = rc == 0 ? djob_json_print(doc) : NULL;
	if (rc == 0 && text == NULL)
		rc = djob_set_error(&e, DJOB_ENOMEM, 1, "Out of memory");
	if (doc)
		bson_destroy(doc);
	if (rc != 0) {
		char *why = strdup(e.message);
		free(job->result_error);
		job->result_error = why;
		if (err)
			*err = e;
		return rc;
	}
	free(job->result);
	free(job->result_error);
	job->result_error = NULL;
	job->result = text;
	return 0;
}

int djob_job_set_error(djob_job_t *job, const char *message)
{
	char *copy = NULL;

	if (job == NULL)
		return DJOB_EINVAL;
	if (message != NULL) {
		copy = strdup(message);
		if (copy == NULL)
			return DJOB_ENOMEM;
	}
	free(job->error);
	job->error = copy;
	return 0;
}

int djob_job_set_progress(djob_job_t *job, double value, const char *message)
{
	if (job == NULL || !isfinite(value))
		return DJOB_EINVAL;
	char *copy = NULL;
	if (message != NULL) {
		size_t n = strnlen(message, DJOB_PROGRESS_MESSAGE_MAX + 1);
		if (n > DJOB_PROGRESS_MESSAGE_MAX || !bson_utf8_validate(message, n, false))
			return DJOB_EINVAL;
		copy = strdup(message);
		if (copy == NULL)
			return DJOB_ENOMEM;
	}
	pthread_mutex_lock(&job->progress_mu);
	free(job->progress_message);
	job->progress_message = copy;
	job->progress_value = value;
	job->progress_set = true;
	job->progress_dirty = true;
	pthread_mutex_unlock(&job->progress_mu);
	return 0;
}

char *djob_job_take_progress(djob_job_t *job)
{
	char *text = NULL;
	pthread_mutex_lock(&job->progress_mu);
	if (job->progress_dirty) {
		cJSON *o = cJSON_CreateObject();
		if (o && cJSON_AddNumberToObject(o, "value", job->progress_value) &&
		    (!job->progress_message ||
		     cJSON_AddStringToObject(o, "message", job->progress_message)))
			text = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		if (text)
			job->progress_dirty = false;
	}
	pthread_mutex_unlock(&job->progress_mu);
	return text;
}

int djob_job_should_stop(const djob_job_t *job)
{
	if (job == NULL)
		return 1;
	if (atomic_load(&job->lease_lost))
		return 1;
	return job->stopping != NULL && atomic_load(job->stopping);
}

void djob_job_free(djob_job_t *job)
{
	if (job == NULL)
		return;
	pthread_mutex_destroy(&job->progress_mu);
	free(job->progress_message);
	free(job->id);
	free(job->type);
	free(job->payload);
	free(job->result);
	free(job->result_error);
	free(job->error);
	/* worker_id is lent by the worker. */
	free(job);
}

/* A number that fits an int, else fallback. */
static int int_field(const cJSON *obj, const char *name, int fallback)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
	double v;

	if (!cJSON_IsNumber(item))
		return fallback;
	v = item->valuedouble;
	if (v < INT_MIN || v > INT_MAX)
		return fallback;
	return (int)v;
}

/* The id from the message key, else "_id", "jobId" or "id" of the value.
 * Returns an allocated copy or NULL with err set. */
static char *message_id(const char *key, size_t key_len, const cJSON *root, djob_error_t *err)
{
	static const char *const fields[] = {"_id", "jobId", "id"};
	char *id;

	if (key != NULL && key_len > 0) {
		id = malloc(key_len + 1);
		if (id == NULL) {
			djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
			return NULL;
		}
		memcpy(id, key, key_len);
		id[key_len] = '\0';
		if (strlen(id) != key_len || !djob_id_is_valid(id)) {
			free(id);
			djob_set_error(err, DJOB_EINVAL, 0, "Message key is not a job id");
			return NULL;
		}
		return id;
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, fields[i]);
		if (item == NULL)
			continue;
		if (!cJSON_IsString(item) || !djob_id_is_valid(item->valuestring)) {
			djob_set_error(err, DJOB_EINVAL, 0, "Message field %s is not a job id",
			               fields[i]);
			return NULL;
		}
		id = strdup(item->valuestring);
		if (id == NULL)
			djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
		return id;
	}
	djob_set_error(err, DJOB_EINVAL, 0, "Message has no job id");
	return NULL;
}

int djob_job_from_message(djob_job_t **out, const char *key, size_t key_len, const char *value,
                          size_t value_len, djob_error_t *err)
{
	cJSON *root = NULL;
	bson_t *doc = NULL;
	const cJSON *type;
	const cJSON *payload;
	djob_job_t *job = NULL;
	int rc;

	if (out == NULL)
		return djob_set_error(err, DJOB_EINVAL, 0, "Output pointer is NULL");
	*out = NULL;
	if (value == NULL || value_len == 0)
		return djob_set_error(err, DJOB_EINVAL, 0, "Message has no value");
	rc = djob_json_parse(value, value_len, "Message value", &root, &doc, err);
	if (rc != 0)
		goto fail;
	if (!cJSON_IsObject(root)) {
		rc = djob_set_error(err, DJOB_EINVAL, 0, "Message value is not a JSON object");
		goto fail;
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		rc = djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
		goto fail;
	}
	pthread_mutex_init(&job->progress_mu, NULL);
	atomic_init(&job->lease_lost, 0);
	atomic_init(&job->finishing, 0);
	atomic_init(&job->seq, -1);
	atomic_init(&job->seq_at, 0);
	job->id = message_id(key, key_len, root, err);
	if (job->id == NULL) {
		rc = err ? err->code : DJOB_EINVAL;
		goto fail;
	}
	type = cJSON_GetObjectItemCaseSensitive(root, "type");
	if (!cJSON_IsString(type) || !djob_type_is_valid(type->valuestring)) {
		rc = djob_set_error(err, DJOB_EINVAL, 0, "Message has no valid type");
		goto fail;
	}
	job->type = strdup(type->valuestring);
	payload = cJSON_GetObjectItemCaseSensitive(root, "payload");
	if (payload != NULL && !cJSON_IsObject(payload)) {
		rc = djob_set_error(err, DJOB_EINVAL, 0, "Message payload is not a JSON object");
		goto fail;
	}
	/* The payload as libbson read it: its integers exact. */
	bson_iter_t it;
	const uint8_t *data;
	uint32_t data_len;
	bson_t sub;
	if (payload != NULL && bson_iter_init_find(&it, doc, "payload") &&
	    BSON_ITER_HOLDS_DOCUMENT(&it)) {
		bson_iter_document(&it, &data_len, &data);
		job->payload =
			bson_init_static(&sub, data, data_len) ? djob_json_print(&sub) : NULL;
	} else {
		job->payload = strdup("{}");
	}
	if (job->type == NULL || job->payload == NULL) {
		rc = djob_set_error(err, DJOB_ENOMEM, 1, "Out of memory");
		goto fail;
	}
	job->payload_len = strlen(job->payload);
	job->attempts = int_field(root, "attempts", 0);
	job->max_attempts = int_field(root, "maxAttempts", 0);
	/* djob's message of a new job is the document as inserted (seq 0):
	 * queued, no attempt, and never updated. A requeued job's message
	 * (retry, due, expired lease) has a later updatedAt. */
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status");
	const cJSON *created = cJSON_GetObjectItemCaseSensitive(root, "createdAt");
	const cJSON *updated = cJSON_GetObjectItemCaseSensitive(root, "updatedAt");
	if (cJSON_IsString(status) && strcmp(status->valuestring, "queued") == 0 &&
	    int_field(root, "attempts", -1) == 0 && job->max_attempts > 0 &&
	    cJSON_IsString(created) && cJSON_IsString(updated) &&
	    strcmp(created->valuestring, updated->valuestring) == 0) {
		int64_t at = 0;
		if (djob_parse_iso(created->valuestring, &at) == 0) {
			atomic_store(&job->seq, 0);
			atomic_store(&job->seq_at, at);
		}
	}
	cJSON_Delete(root);
	bson_destroy(doc);
	*out = job;
	return 0;

fail:
	cJSON_Delete(root);
	if (doc)
		bson_destroy(doc);
	djob_job_free(job);
	return rc;
}
