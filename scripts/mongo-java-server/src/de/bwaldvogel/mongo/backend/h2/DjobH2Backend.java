/*
 * H2Backend whose databases are DjobH2Database: a query on _id with a plain
 * value and more keys ({_id: "x", status: "queued"}) is served from the _id
 * index, as on MongoDB, rather than by a scan (see DjobIdIndex).
 */
package de.bwaldvogel.mongo.backend.h2;

import org.h2.mvstore.MVStore;

import de.bwaldvogel.mongo.MongoDatabase;

public final class DjobH2Backend extends H2Backend {
    public DjobH2Backend(MVStore mvStore) {
        super(mvStore);
    }

    @Override
    protected MongoDatabase openOrCreateDatabase(String databaseName) {
        return new DjobH2Database(databaseName, getMvStore(), getCursorRegistry());
    }
}
