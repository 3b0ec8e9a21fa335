package main

// go test -v .   (in scripts/ferretdb; starts FerretDB in-process on a free port)

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// start runs serve on a free port and a new directory; it returns a client
// and the directory.
func start(t *testing.T, period time.Duration) (*mongo.Client, string) {
	t.Helper()
	dir := t.TempDir() + "/"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, addr, "file:"+dir, logger, period) }()

	client, err := mongo.Connect(context.Background(), options.Client().ApplyURI("mongodb://"+addr+"/"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for client.Ping(context.Background(), nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("FerretDB does not answer")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = client.Disconnect(context.Background())
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return client, dir
}

func openFile(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func tableOf(t *testing.T, db *sql.DB, collection string) string {
	t.Helper()
	var table string
	if err := db.QueryRow("SELECT table_name FROM _ferretdb_collections WHERE name = ?", collection).Scan(&table); err != nil {
		t.Fatal(err)
	}
	return table
}

// plan returns EXPLAIN QUERY PLAN of q, one detail per line.
func plan(t *testing.T, db *sql.DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var res []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		res = append(res, detail)
	}
	return strings.Join(res, "\n")
}

func waitIndexed(t *testing.T, db *sql.DB, table string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?", table+idIndexSuffix).Scan(&n)
		if err == nil && n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no index %s after 5 s (%v)", table+idIndexSuffix, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The statements FerretDB v1.24.2 sends for _id (internal/backends/sqlite/collection.go).
func ferretQueries(table string) map[string]string {
	q := fmt.Sprintf("%q", table)
	return map[string]string{
		"find by _id":   `SELECT  _ferretdb_sjson FROM ` + q + ` WHERE _ferretdb_sjson->'$._id' = ?`,
		"update by _id": `UPDATE ` + q + ` SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`,
		"delete by _id": `DELETE FROM ` + q + ` WHERE _ferretdb_sjson->'$._id' IN (?, ?)`,
	}
}

func TestIDPushdownIndex(t *testing.T) {
	client, dir := start(t, 50*time.Millisecond)
	ctx := context.Background()

	for _, ns := range [][2]string{{"jobsdb", "jobs"}, {"jobsdb", "jobs_locks"}, {"other_db", "Some.Coll"}} {
		coll := client.Database(ns[0]).Collection(ns[1])
		docs := make([]any, 500)
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("id-%05d", i)}, {Key: "status", Value: "queued"}}
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}

		db := openFile(t, filepath.Join(dir, ns[0]+".sqlite"))
		table := tableOf(t, db, ns[1])
		waitIndexed(t, db, table)
		for what, q := range ferretQueries(table) {
			args := []any{`"id-00007"`, `"id-00008"`}
			if what == "find by _id" {
				args = args[:1]
			}
			p := plan(t, db, q, args...)
			t.Logf("%s.%s %s: %s\n  %s", ns[0], ns[1], what, q, p)
			if !strings.Contains(p, "USING INDEX "+table+idIndexSuffix) {
				t.Errorf("%s.%s %s does not use the index:\n%s", ns[0], ns[1], what, p)
			}
		}

		// What clients see does not change: the document, and only FerretDB's own index.
		var got bson.M
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "id-00042"}}).Decode(&got); err != nil || got["status"] != "queued" {
			t.Fatalf("find by _id: %v %v", got, err)
		}
		cur, err := coll.Indexes().List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var idx []bson.M
		if err = cur.All(ctx, &idx); err != nil {
			t.Fatal(err)
		}
		if len(idx) != 1 || idx[0]["name"] != "_id_" {
			t.Errorf("listIndexes: %v", idx)
		}
	}
}

// TestIndexerChurn drops and creates collections and databases (the same
// names again and again) while the indexer looks every millisecond, and
// writes to a stable collection all along: no write may fail, every
// database file must stay intact, and the stable collection keeps every
// document.
func TestIndexerChurn(t *testing.T) {
	client, dir := start(t, time.Millisecond)
	ctx := context.Background()
	stop := time.Now().Add(8 * time.Second)
	if testing.Short() {
		stop = time.Now().Add(2 * time.Second)
	}

	var wg sync.WaitGroup
	var stableN, churnOps atomic.Int64
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}

	wg.Add(1)
	go func() { // the stable writer: inserts, updates and finds by _id
		defer wg.Done()
		coll := client.Database("jobsdb").Collection("jobs")
		for i := 0; time.Now().Before(stop); i++ {
			id := fmt.Sprintf("stable-%06d", i)
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "n", Value: 0}}); err != nil {
				report(fmt.Errorf("stable insert: %w", err))
				return
			}
			if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}); err != nil {
				report(fmt.Errorf("stable update: %w", err))
				return
			}
			stableN.Add(1)
		}
	}()

	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				// One goroutine per database: FerretDB 1.24 itself fails
				// (nil dereferences) when a database is dropped while
				// another connection uses it.
				d := client.Database(fmt.Sprintf("churn%d", w))
				if w == 0 { // collections come and go beside the stable writer's
					d = client.Database("jobsdb")
				}
				c := d.Collection(fmt.Sprintf("c%d", i%3))
				docs := make([]any, 200)
				for k := range docs {
					docs[k] = bson.D{{Key: "_id", Value: fmt.Sprintf("%d-%d-%d", w, i, k)}}
				}
				if _, err := c.InsertMany(ctx, docs); err != nil {
					report(fmt.Errorf("churn insert: %w", err))
					return
				}
				switch i % 4 {
				case 0:
					_ = c.Drop(ctx)
				case 1:
					if w == 0 {
						_ = c.Drop(ctx)
					} else {
						_ = d.Drop(ctx)
					}
				}
				churnOps.Add(1)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d stable inserts+updates, %d churn rounds", stableN.Load(), churnOps.Load())

	n, err := client.Database("jobsdb").Collection("jobs").CountDocuments(ctx, bson.D{{Key: "n", Value: 1}})
	if err != nil || n != stableN.Load() {
		t.Errorf("stable collection: %d documents with n=1, want %d (%v)", n, stableN.Load(), err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
	for _, f := range files {
		db := openFile(t, f)
		var res string
		if err := db.QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
			t.Errorf("%s: integrity_check %q %v", f, res, err)
		}
	}
	db := openFile(t, filepath.Join(dir, "jobsdb.sqlite"))
	waitIndexed(t, db, tableOf(t, db, "jobs"))
}

// TestIndexerOpensOnlyOnSchemaChange plays FerretDB's part with a connection
// of its own: writes that change no schema must not make the indexer open
// the file; a new collection table must.
func TestIndexerOpensOnlyOnSchemaChange(t *testing.T) {
	dir := t.TempDir() + "/"
	path := dir + "jobsdb.sqlite"
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// What FerretDB v1.24.2 does for a new database and collection.
	createColl := func(name, table string) {
		exec(`CREATE TABLE "` + table + `" (_ferretdb_sjson TEXT NOT NULL CHECK(_ferretdb_sjson != '')) STRICT`)
		exec(`INSERT INTO "_ferretdb_collections" (name, table_name, settings) VALUES (?, ?, '{}')`, name, table)
		exec(`CREATE UNIQUE INDEX "` + table + `__id_" ON "` + table + `" (_ferretdb_sjson->"_id")`)
	}
	exec(`CREATE TABLE "_ferretdb_collections" (name TEXT NOT NULL UNIQUE CHECK(name != ''), table_name TEXT NOT NULL UNIQUE CHECK(table_name != ''), settings TEXT NOT NULL CHECK(settings != '')) STRICT`)
	createColl("jobs", "jobs_e407107d")

	ix := newIndexer(dir, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ix.pass()
	if ix.opens != 1 {
		t.Fatalf("%d opens for the first pass, want 1", ix.opens)
	}
	ix.pass() // sees its own CREATE INDEX in the WAL: no schema change it does not know
	if ix.opens != 1 {
		t.Fatalf("%d opens after its own CREATE INDEX, want 1", ix.opens)
	}
	for i := 0; i < 3000; i++ { // a few WALs' worth (1000 pages): checkpoints and WAL restarts
		exec(`INSERT INTO "jobs_e407107d" VALUES (?)`, fmt.Sprintf(`{"_id":"id-%05d","pad":"%05000d"}`, i, i))
		if i%100 == 0 {
			ix.pass()
		}
	}
	exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	ix.pass()
	exec(`UPDATE "jobs_e407107d" SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?`, `{"_id":"id-00001"}`, `"id-00001"`)
	ix.pass()
	if ix.opens != 1 {
		t.Fatalf("%d opens after writes without a schema change, want 1", ix.opens)
	}

	createColl("jobs_locks", "jobs_locks_0a1b2c3d")
	ix.pass()
	if ix.opens != 2 {
		t.Fatalf("%d opens after a new collection, want 2", ix.opens)
	}
	// (EXPLAIN on a connection that has not read the new schema yet shows
	// the old plan; FerretDB's statements see the schema change and are
	// prepared again.)
	fresh := openFile(t, path)
	for _, table := range []string{"jobs_e407107d", "jobs_locks_0a1b2c3d"} {
		for what, q := range ferretQueries(table) {
			args := []any{`"id-00007"`, `"id-00008"`}
			if what == "find by _id" {
				args = args[:1]
			}
			if p := plan(t, fresh, q, args...); !strings.Contains(p, "USING INDEX "+table+idIndexSuffix) {
				t.Errorf("%s %s: %s", table, what, p)
			}
		}
	}
	exec(`DROP TABLE "jobs_locks_0a1b2c3d"`)
	exec(`DELETE FROM "_ferretdb_collections" WHERE name = 'jobs_locks'`)
	_ = fresh.Close()
	ix.pass()
	ix.pass()
	if ix.opens != 3 {
		t.Fatalf("%d opens after a dropped collection, want 3", ix.opens)
	}
}
