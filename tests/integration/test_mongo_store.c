/*
 * test_mongo_store CASE
 *
 * The MongoDB operations the job store is built on (DESIGN.md sections 3-4),
 * proved with libmongoc against the dev stack's server (FerretDB). Each CASE
 * works in its own collection, named per run, and drops it at the end:
 *   inserted_jobs_are_found_by_type_and_id
 *   find_and_modify_claims_once_then_returns_null: findAndModify filtered on
 *       status returns the new document once, then null (nothing matches)
 *   unique_index_rejects_duplicate_with_11000
 */
#include "stack.h"

#include <mongoc/mongoc.h>
#include <stdio.h>
#include <string.h>

static mongoc_client_t *client;
static mongoc_collection_t *coll;

static void connect_and_ping(void)
{
	bson_error_t error;
	mongoc_uri_t *uri = mongoc_uri_new_with_error(stack_mongo_uri(), &error);
	char name[128];
	bson_t *ping = BCON_NEW("ping", BCON_INT32(1));

	STACK_CHECK(uri, "bad DJOB_MONGO_URI %s: %s", stack_mongo_uri(), error.message);
	if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
		mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
	client = mongoc_client_new_from_uri_with_error(uri, &error);
	STACK_CHECK(client, "mongoc client for %s: %s", stack_mongo_uri(), error.message);
	mongoc_client_set_appname(client, "djob-integration-test");
	STACK_CHECK(
		mongoc_client_command_simple(client, "admin", ping, NULL, NULL, &error),
		"MongoDB at %s does not answer (%s): is the dev stack up? (scripts/devstack up)",
		stack_mongo_uri(), error.message);

	const char *db = mongoc_uri_get_database(uri);
	stack_unique_name(name, sizeof name, "it_mongo", 1);
	coll = mongoc_client_get_collection(client, db ? db : "jobsdb", name);
	printf("# %s, collection %s.%s\n", stack_mongo_uri(), db ? db : "jobsdb", name);
	bson_destroy(ping);
	mongoc_uri_destroy(uri);
}

static void drop_and_disconnect(void)
{
	bson_error_t error;

	STACK_CHECK(mongoc_collection_drop(coll, &error), "drop %s: %s",
	            mongoc_collection_get_name(coll), error.message);
	mongoc_collection_destroy(coll);
	mongoc_client_destroy(client);
}

static void insert(bson_t *doc)
{
	bson_error_t error;

	STACK_CHECK(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "insert: %s",
	            error.message);
	bson_destroy(doc);
}

static const char *string_field(const bson_t *doc, const char *key)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return NULL;
}

static int32_t int_field(const bson_t *doc, const char *key)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it))
		return (int32_t)bson_iter_as_int64(&it);
	return -1;
}

static void test_insert_then_find(void)
{
	bson_error_t error;
	const bson_t *doc;
	int n = 0;

	for (int i = 0; i < 5; i++) {
		char id[16];
		snprintf(id, sizeof id, "job-%d", i);
		insert(BCON_NEW("_id", BCON_UTF8(id), "type", BCON_UTF8(i % 2 ? "file" : "compute"),
		                "status", BCON_UTF8("queued"), "attempts", BCON_INT32(0)));
	}

	bson_t *filter = BCON_NEW("type", BCON_UTF8("compute"));
	mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
	while (mongoc_cursor_next(cursor, &doc)) {
		const char *type = string_field(doc, "type");
		STACK_CHECK(type && strcmp(type, "compute") == 0, "find by type returned type %s",
		            type ? type : "(none)");
		n++;
	}
	STACK_CHECK(!mongoc_cursor_error(cursor, &error), "find: %s", error.message);
	STACK_CHECK(n == 3, "find {type: compute} returned %d documents, expected 3", n);
	mongoc_cursor_destroy(cursor);
	bson_destroy(filter);

	filter = BCON_NEW("_id", BCON_UTF8("job-3"));
	cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
	STACK_CHECK(mongoc_cursor_next(cursor, &doc), "find {_id: job-3} returned nothing");
	STACK_CHECK(strcmp(string_field(doc, "type"), "file") == 0, "job-3 has the wrong type");
	STACK_CHECK(!mongoc_cursor_next(cursor, &doc), "find by _id returned two documents");
	mongoc_cursor_destroy(cursor);
	bson_destroy(filter);
	stack_ok("inserted 5 documents, found 3 by type and 1 by _id");
}

/* findAndModify {_id: job-1, status: queued} -> processing, asking for the
 * new document. True with the document copied into *out (the caller destroys
 * it) when the filter matched; false when the reply's value is null. */
static bool claim(bson_t *out)
{
	bson_error_t error;
	bson_t reply;
	bson_iter_t it;
	bool found = false;
	bson_t *filter = BCON_NEW("_id", BCON_UTF8("job-1"), "status", BCON_UTF8("queued"));
	bson_t *update =
		BCON_NEW("$set", "{", "status", BCON_UTF8("processing"), "workerId",
	                 BCON_UTF8("w1"), "}", "$inc", "{", "attempts", BCON_INT32(1), "}");
	mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();

	mongoc_find_and_modify_opts_set_update(opts, update);
	mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	STACK_CHECK(mongoc_collection_find_and_modify_with_opts(coll, filter, opts, &reply, &error),
	            "findAndModify: %s", error.message);
	STACK_CHECK(bson_iter_init_find(&it, &reply, "value"), "findAndModify reply has no value");
	if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_t view;
		bson_iter_document(&it, &len, &data);
		STACK_CHECK(bson_init_static(&view, data, len), "findAndModify value is corrupt");
		bson_copy_to(&view, out);
		found = true;
	} else {
		STACK_CHECK(BSON_ITER_HOLDS_NULL(&it),
		            "findAndModify value is neither a document nor null");
	}
	bson_destroy(&reply);
	mongoc_find_and_modify_opts_destroy(opts);
	bson_destroy(update);
	bson_destroy(filter);
	return found;
}

static void test_conditional_update(void)
{
	bson_t doc;

	insert(BCON_NEW("_id", BCON_UTF8("job-1"), "status", BCON_UTF8("queued"), "attempts",
	                BCON_INT32(0)));
	STACK_CHECK(claim(&doc), "first claim of a queued job matched nothing");
	STACK_CHECK(strcmp(string_field(&doc, "status"), "processing") == 0 &&
	                    int_field(&doc, "attempts") == 1 &&
	                    strcmp(string_field(&doc, "workerId"), "w1") == 0,
	            "findAndModify did not return the updated document");
	bson_destroy(&doc);
	STACK_CHECK(!claim(&doc), "second claim matched a job that is no longer queued");
	stack_ok("claim returned the new document once, then null");
}

static void test_unique_index_duplicate(void)
{
	bson_error_t error;
	bson_t reply;
	const char *name = mongoc_collection_get_name(coll);
	bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(name), "indexes", "[", "{", "key", "{",
	                       "idempotencyKey", BCON_INT32(1), "}", "name",
	                       BCON_UTF8("idempotencyKey_1"), "unique", BCON_BOOL(true), "}", "]");

	STACK_CHECK(mongoc_collection_command_simple(coll, cmd, NULL, NULL, &error),
	            "createIndexes: %s", error.message);
	bson_destroy(cmd);

	insert(BCON_NEW("_id", BCON_UTF8("job-a"), "idempotencyKey", BCON_UTF8("key-1")));
	bson_t *dup = BCON_NEW("_id", BCON_UTF8("job-b"), "idempotencyKey", BCON_UTF8("key-1"));
	bool inserted = mongoc_collection_insert_one(coll, dup, NULL, &reply, &error);
	STACK_CHECK(!inserted, "a duplicate idempotencyKey was inserted despite the unique index");
	STACK_CHECK(error.code == 11000,
	            "duplicate insert failed with code %u (%s), expected 11000", error.code,
	            error.message);
	bson_destroy(&reply);
	bson_destroy(dup);
	stack_ok("duplicate key rejected with 11000: %s", error.message);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"inserted_jobs_are_found_by_type_and_id", test_insert_then_find},
		{"find_and_modify_claims_once_then_returns_null", test_conditional_update},
		{"unique_index_rejects_duplicate_with_11000", test_unique_index_duplicate},
	};
	const char *want = argc > 1 ? argv[1] : "";

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(want, cases[i].name) != 0)
			continue;
		stack_test_name = cases[i].name;
		mongoc_init();
		connect_and_ping();
		cases[i].fn();
		drop_and_disconnect();
		mongoc_cleanup();
		return 0;
	}
	fprintf(stderr, "usage: %s CASE, one of:\n", argv[0]);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		fprintf(stderr, "  %s\n", cases[i].name);
	return 2;
}
