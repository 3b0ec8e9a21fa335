/*
 * mongo-java-server for the djob dev stack: a MongoDB wire-protocol server
 * whose every collection operation is synchronized (a conditional
 * findAndModify is atomic, as on MongoDB), persisted to one H2 MVStore file.
 *
 * usage: java -cp 'LIBS/*:CLASSES' DjobMongoServer HOST PORT FILE
 *
 * System properties:
 *   djob.mongo.commitDelayMs  how long a write may wait for the MVStore's
 *                             background commit (default 100; H2's own is
 *                             1000). A SIGKILL loses at most about that much;
 *                             SIGTERM loses nothing.
 *
 * The backend is DjobH2Backend (src/de/bwaldvogel/mongo/backend/h2/): H2's,
 * but a query holding _id with a plain value next to other keys, such as the
 * store's conditional findAndModify {_id: "x", status: "queued"}, is served
 * from the _id index, as on MongoDB, not by scanning the collection.
 *
 * Prints "listening on HOST:PORT ..." once it accepts connections. SIGTERM
 * (and SIGINT) close the clients, then the backend, which commits and closes
 * the file; a second start reads it back.
 */

import java.io.File;
import java.util.List;

import org.h2.mvstore.MVStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.h2.DjobH2Backend;
import de.bwaldvogel.mongo.backend.h2.H2Backend;

public final class DjobMongoServer {
    /*
     * 1.47.0's newest ServerVersion is MONGO_5_0, which reports wire version
     * 8 (MongoDB 4.2's); newer drivers refuse old wire versions. The version
     * is only reported (hello, buildInfo, serverStatus), never consulted by
     * the server, so report a consistent, current pair: MongoDB 6.0, wire 17.
     */
    private static final MongoVersion VERSION = new MongoVersion() {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(6, 0, 0);
        }

        @Override
        public int getWireVersion() {
            return 17;
        }
    };

    private static final Logger log = LoggerFactory.getLogger(DjobMongoServer.class);

    private DjobMongoServer() {}

    private static void fail(String msg) {
        log.error(msg);
        System.exit(2);
    }

    private static MVStore open(File file) {
        try {
            return new MVStore.Builder().fileName(file.getPath()).open();
        } catch (RuntimeException e) {
            fail("cannot open " + file + ": " + e.getMessage());
            throw e;
        }
    }

    public static void main(String[] args) {
        if (args.length != 3)
            fail("usage: DjobMongoServer HOST PORT FILE");
        String host = args[0];
        int port = 0;
        try {
            port = Integer.parseInt(args[1]);
        } catch (NumberFormatException e) {
            fail("port must be a number (got " + args[1] + ")");
        }
        File file = new File(args[2]);
        File dir = file.getAbsoluteFile().getParentFile();
        if (dir == null || !dir.isDirectory())
            fail("directory of " + file + " does not exist");
        int commitDelayMs = Integer.getInteger("djob.mongo.commitDelayMs", 100);

        long t0 = System.nanoTime();
        /* Opened here rather than by H2Backend(String) to set the commit
         * delay; the backend closes it. A second process on the same file
         * fails here: MVStore locks the file. */
        MVStore store = open(file);
        store.setAutoCommitDelay(commitDelayMs);
        H2Backend backend = new DjobH2Backend(store);
        backend.version(VERSION);
        MongoServer server = new MongoServer(backend);

        Thread hook = new Thread(() -> {
            log.info("shutting down");
            try {
                server.shutdownNow(); /* closes the clients, then the backend */
            } finally {
                if (!store.isClosed())
                    store.close();
            }
            log.info("closed {}", file);
        }, "djob-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        try {
            server.bind(host, port);
        } catch (Exception e) { /* Netty throws BindException undeclared */
            fail("cannot listen on " + host + ":" + port + ": " + e);
        }
        log.info("listening on {}:{} (MongoDB {}, wire {}, H2 file {}, commit delay {} ms, ready in {} ms)",
                host, port, VERSION.toVersionString(), VERSION.getWireVersion(), file, commitDelayMs,
                (System.nanoTime() - t0) / 1_000_000);
    }
}
