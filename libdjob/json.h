/*
 * Outside JSON in and out: the one place where text from clients, Kafka,
 * handlers and the API's replies is parsed, and where payloads and results
 * are rendered back to JSON. Not installed.
 *
 * What is kept exactly: integers of int64 range (as BSON int32 or int64,
 * rendered as the same digits), doubles (rendered as the shortest text that
 * reads back as the same double, with ".0" when it would read as an
 * integer), strings, booleans, null. What is refused: nesting deeper than
 * DJOB_JSON_MAX_DEPTH, integers outside int64, numbers whose magnitude does
 * not fit a double (1e400, 1e-400), NaN and Infinity, trailing text, and in
 * documents $-prefixed, dotted or empty keys and invalid UTF-8. The integer
 * -0 is the integer 0; -0.0 stays -0.0.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef DJOB_JSON_H
#define DJOB_JSON_H

#include "djob_private.h"

#include <bson/bson.h>

#define DJOB_JSON_MAX_DEPTH 32
/* The largest payload or result, as BSON: room under MongoDB's 16 MiB
 * document for the job's other fields. */
#define DJOB_JSON_MAX_DOC (15 * 1024 * 1024)

/* Parse outside JSON text of `len` bytes. A non-recursive scan refuses too
 * deep nesting and bad numbers before any parser sees the text; cJSON then
 * checks the grammar (*tree_out) and refuses $-prefixed keys (libbson would
 * read them as Extended JSON); libbson then reads the values (*bson_out,
 * a top-level array as a document keyed "0", "1", ...). Either output may
 * be NULL when not wanted. `what` names the text in messages ("Request
 * body"). Returns 0 or DJOB_EINVAL (DJOB_ENOMEM).
 * Ownership: the caller frees *tree_out with cJSON_Delete and *bson_out
 * with bson_destroy. */
int djob_json_parse(const char *text, size_t len, const char *what, cJSON **tree_out,
                    bson_t **bson_out, djob_error_t *err);

/* Check a payload or result document: keys neither $-prefixed, dotted nor
 * empty, UTF-8 strings without NUL, at most DJOB_JSON_MAX_DOC bytes (else
 * DJOB_ETOOBIG). `what` names it in messages ("payload"). */
int djob_json_check_doc(const bson_t *doc, const char *what, djob_error_t *err);

/* A number as djob renders it (see above). Ownership: cJSON_Delete. */
cJSON *djob_json_int64(int64_t v);
cJSON *djob_json_double(double v);

/* A BSON value, document or array as cJSON, numbers exact; dates as
 * ISO-8601 strings, ObjectIds as hex, other types as null.
 * Ownership: cJSON_Delete. */
cJSON *djob_json_from_value(const bson_iter_t *it);
cJSON *djob_json_from_bson(const bson_t *doc, bool array);

/* A document as JSON text. Ownership: free(). */
char *djob_json_print(const bson_t *doc);

#endif
