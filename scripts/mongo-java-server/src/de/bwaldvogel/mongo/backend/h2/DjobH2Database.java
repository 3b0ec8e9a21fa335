/*
 * H2Database whose _id indexes are DjobIdIndex and whose secondary indexes
 * are DjobStringIndex (see there); unique indexes on other keys, and
 * everything else, are H2Database's.
 */
package de.bwaldvogel.mongo.backend.h2;

import java.lang.reflect.Field;
import java.util.List;

import org.h2.mvstore.MVMap;
import org.h2.mvstore.MVStore;

import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.KeyValue;

final class DjobH2Database extends H2Database {
    private static final Field MV_MAP;

    static {
        try {
            MV_MAP = H2UniqueIndex.class.getDeclaredField("mvMap");
            MV_MAP.setAccessible(true);
        } catch (NoSuchFieldException e) {
            throw new ExceptionInInitializerError("H2UniqueIndex has no field mvMap (not mongo-java-server 1.47.0?): " + e);
        }
    }

    DjobH2Database(String databaseName, MVStore mvStore, CursorRegistry cursorRegistry) {
        super(databaseName, mvStore, cursorRegistry);
    }

    /* Called from H2Database's constructor too (the indexes of collections
     * already in the file), so it uses no field of this class. */
    @Override
    protected Index<Object> openOrCreateUniqueIndex(String collectionName, String indexName, List<IndexKey> keys,
            boolean sparse) {
        Index<Object> index = super.openOrCreateUniqueIndex(collectionName, indexName, keys, sparse);
        if (!DjobIdIndex.isIdIndex(keys) || index.getClass() != H2UniqueIndex.class)
            return index;
        /* The same MVMap H2Database opened for it, so the same data. */
        @SuppressWarnings("unchecked")
        MVMap<KeyValue, Object> mvMap = (MVMap<KeyValue, Object>) get(index);
        return new DjobIdIndex(mvMap, indexName, keys, sparse);
    }

    /* Also called from H2Database's constructor. */
    @Override
    protected Index<Object> openOrCreateSecondaryIndex(String collectionName, String indexName, List<IndexKey> keys,
            boolean sparse) {
        if (!DjobStringIndex.canIndex(keys))
            return super.openOrCreateSecondaryIndex(collectionName, indexName, keys, sparse);
        return new DjobStringIndex(indexName, keys, sparse);
    }

    private static Object get(Index<Object> index) {
        try {
            return MV_MAP.get(index);
        } catch (IllegalAccessException e) {
            throw new IllegalStateException("cannot read H2UniqueIndex.mvMap: " + e, e);
        }
    }
}
