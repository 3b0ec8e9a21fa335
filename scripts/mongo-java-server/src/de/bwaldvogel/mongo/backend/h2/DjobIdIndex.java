/*
 * The _id index of a djob H2 collection, answering a query that holds _id
 * with a plain value from the index whatever else the query holds, as
 * MongoDB does.
 *
 * mongo-java-server 1.47.0's AbstractUniqueIndex.canHandle accepts only a
 * query whose key set equals the index's ({_id: "x"}); {_id: "x", status:
 * "queued"}, the filter of each conditional findAndModify djob's store
 * sends, falls through to a scan of the whole collection. When the query
 * holds _id with a plain value (a string, number, ObjectId, ...; not a
 * document such as {$in: [...]}, an array, a regular expression or null),
 * only the document with that _id can match: canHandle and getPositions
 * look up {_id: value} alone, and the collection matches that one candidate
 * against the full query (AbstractMongoCollection.queryDocuments ->
 * matchDocuments(query, positions, ...)). Any other query is handled
 * exactly as before.
 *
 * Everything else (the MVMap, unique constraint, add, remove, update) is
 * H2UniqueIndex's own. In this package because H2UniqueIndex's
 * constructor is package-private (a classpath, no JPMS).
 */
package de.bwaldvogel.mongo.backend.h2;

import java.util.Collection;
import java.util.List;

import org.h2.mvstore.MVMap;

import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.KeyValue;
import de.bwaldvogel.mongo.bson.BsonRegularExpression;
import de.bwaldvogel.mongo.bson.Document;

final class DjobIdIndex extends H2UniqueIndex {
    static final String ID = "_id";

    DjobIdIndex(MVMap<KeyValue, Object> mvMap, String name, List<IndexKey> keys, boolean sparse) {
        super(mvMap, name, keys, sparse);
    }

    /* Whether an index on these keys is the one this class serves. */
    static boolean isIdIndex(List<IndexKey> keys) {
        return keys.size() == 1 && ID.equals(keys.get(0).getKey());
    }

    /* {_id: value} if the query holds _id with a plain value next to other
     * keys, else null (the query is handled as by H2UniqueIndex). */
    private static Document idOnly(Document query) {
        if (query.size() < 2 || !query.containsKey(ID))
            return null;
        Object value = query.get(ID);
        if (value == null || value instanceof Document || value instanceof Collection
                || value.getClass().isArray() || BsonRegularExpression.isRegularExpression(value))
            return null;
        return new Document(ID, value);
    }

    @Override
    public synchronized boolean canHandle(Document query) {
        Document id = idOnly(query);
        return super.canHandle(id != null ? id : query);
    }

    @Override
    public synchronized Iterable<Object> getPositions(Document query) {
        Document id = idOnly(query);
        return super.getPositions(id != null ? id : query);
    }
}
