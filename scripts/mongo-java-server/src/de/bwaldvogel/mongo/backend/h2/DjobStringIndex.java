/*
 * A secondary (non-unique) index of a djob H2 collection, kept in memory:
 * the positions of the documents under each string value of the index's
 * first key. It answers a query that holds that key with a string, or with
 * {$in: [strings]}, with those documents alone as candidates; the
 * collection matches each against the full query
 * (AbstractMongoCollection.queryDocuments -> matchDocuments(query,
 * positions, ...)), sorts and limits, as it does after the _id index.
 *
 * mongo-java-server 1.47.0 ignores secondary indexes (openOrCreateSecondaryIndex
 * returns an EmptyIndex), so the scheduler's sweeps ({status: "scheduled",
 * runAt: {$lte: now}}, {status: "processing", leaseUntil: {$lt: now}}) and
 * GET /jobs?status=... read every document of the collection under its lock,
 * every second: on 100,000 jobs that held each GET /jobs/:id behind a scan.
 * With this index they read only the jobs in that status.
 *
 * Only the first key is used and only string equality: enough for djob's
 * {status, ...} indexes. A string can match only a document whose field is
 * that string or an array holding it, so documents whose field is an array
 * are candidates of every query; a document whose field is missing, null, a
 * number or a document can never match a string and is kept under no value.
 * Any other query (a dotted first key, a number, null, a range, a regular
 * expression) is not handled here and falls through as before.
 *
 * Not persisted: H2Database opens every index at start and the collection
 * fills an empty index from its documents (AbstractMongoCollection.addIndex),
 * which takes about a second per 100,000 jobs. Positions are the documents'
 * _id values, H2Collection's positions. Every method runs under the
 * collection's lock (AbstractSynchronizedMongoCollection), and
 * getPositions returns a copy.
 *
 * It reports itself sparse to the collection, so that removeDocument and
 * getSinglePosition, which get no position from it, rely on the _id index;
 * listIndexes shows the options it was created with.
 */
package de.bwaldvogel.mongo.backend.h2;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.bson.Document;

final class DjobStringIndex extends Index<Object> {
    private static final String ID = "_id";
    /* The value under which documents whose field is an array are kept. */
    private static final Object ARRAYS = new Object();

    private final String field;
    private final boolean createdSparse;
    private final Map<Object, Set<Object>> byValue = new HashMap<>();
    private final Map<Object, Object> valueOf = new HashMap<>();

    DjobStringIndex(String name, List<IndexKey> keys, boolean sparse) {
        super(name, keys, sparse);
        this.field = keys.get(0).getKey();
        this.createdSparse = sparse;
    }

    /* Whether this class can serve an index on these keys. */
    static boolean canIndex(List<IndexKey> keys) {
        return !keys.isEmpty() && !keys.get(0).getKey().contains(".") && !ID.equals(keys.get(0).getKey());
    }

    /* The value a document is kept under, or null for none. */
    private Object valueKey(Document document) {
        Object v = document.get(field);
        if (v instanceof String)
            return v;
        if (v instanceof Collection)
            return ARRAYS;
        return null;
    }

    /* The strings a query asks the field to equal, or null if it asks
     * anything else. */
    private List<String> wanted(Document query) {
        if (!query.containsKey(field))
            return null;
        Object v = query.get(field);
        if (v instanceof String)
            return List.of((String) v);
        if (!(v instanceof Document) || ((Document) v).size() != 1 || !((Document) v).containsKey("$in"))
            return null;
        Object in = ((Document) v).get("$in");
        if (!(in instanceof Collection))
            return null;
        List<String> out = new ArrayList<>();
        for (Object o : (Collection<?>) in) {
            if (!(o instanceof String))
                return null;
            out.add((String) o);
        }
        return out;
    }

    private void put(Object value, Object position) {
        if (value == null)
            return;
        byValue.computeIfAbsent(value, k -> new LinkedHashSet<>()).add(position);
        valueOf.put(position, value);
    }

    private void drop(Object position) {
        Object value = valueOf.remove(position);
        if (value == null)
            return;
        Set<Object> set = byValue.get(value);
        if (set != null && set.remove(position) && set.isEmpty())
            byValue.remove(value);
    }

    @Override
    protected boolean isSparse() {
        return true;
    }

    @Override
    public Document toIndexDescription() {
        Document d = super.toIndexDescription();
        if (!createdSparse)
            d.remove("sparse");
        return d;
    }

    @Override
    public Object getPosition(Document document) {
        return null;
    }

    @Override
    public void checkAdd(Document document, MongoCollection<Object> collection) {
    }

    @Override
    public void add(Document document, Object position, MongoCollection<Object> collection) {
        put(valueKey(document), position);
    }

    @Override
    public Object remove(Document document) {
        drop(document.get(ID));
        return null;
    }

    @Override
    public boolean canHandle(Document query) {
        return wanted(query) != null;
    }

    @Override
    public Iterable<Object> getPositions(Document query) {
        /* A position is under one value only, so the lists do not overlap. */
        List<Object> out = new ArrayList<>();
        for (String v : new LinkedHashSet<>(wanted(query)))
            addAll(byValue.get(v), out);
        addAll(byValue.get(ARRAYS), out);
        return out;
    }

    private static void addAll(Set<Object> from, List<Object> out) {
        if (from != null)
            out.addAll(from);
    }

    @Override
    public long getCount() {
        return valueOf.size();
    }

    @Override
    public long getDataSize() {
        return 0;
    }

    @Override
    public void checkUpdate(Document oldDocument, Document newDocument, MongoCollection<Object> collection) {
    }

    @Override
    public void updateInPlace(Document oldDocument, Document newDocument, Object position,
            MongoCollection<Object> collection) {
        drop(position);
        put(valueKey(newDocument), position);
    }

    @Override
    public void drop() {
        byValue.clear();
        valueOf.clear();
    }
}
