/*
 * The store's codec: job documents between BSON (what MongoDB keeps) and
 * JSON (what GET returns and Kafka carries), and the field getters the
 * plans read documents with.
 */
#include "store_private.h"

#include "json.h"

#include <string.h>

/* Internal fields that are not part of the wire contract. */
static bool hidden_field(const char *key)
{
	return strcmp(key, "seq") == 0;
}

/* The document with its values rendered by json.c, numbers exact. */
static cJSON *bson_to_cjson(const bson_t *doc)
{
	cJSON *out = cJSON_CreateObject();
	bson_iter_t it;
	if (!out || !bson_iter_init(&it, doc))
		return out;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		if (!hidden_field(key))
			cJSON_AddItemToObject(out, key, djob_json_from_value(&it));
	}
	return out;
}

cJSON *djob_doc_to_cjson(const bson_t *doc)
{
	return bson_to_cjson(doc);
}

char *djob_doc_to_json(const bson_t *doc)
{
	cJSON *j = djob_doc_to_cjson(doc);
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return s;
}

int64_t djob_doc_int(const bson_t *doc, const char *key, int64_t dflt)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
		return bson_iter_as_int64(&it);
	return dflt;
}

const char *djob_doc_str(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return "";
}

int64_t djob_doc_date(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it))
		return bson_iter_date_time(&it);
	return 0;
}

djob_state_t djob_doc_state(const bson_t *doc)
{
	return djob_state_parse(djob_doc_str(doc, "status"));
}
