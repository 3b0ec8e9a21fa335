// Command ferretdb runs FerretDB v1 with its SQLite backend for the djob dev
// stack. It embeds the ferretdb package because `go install .../cmd/ferretdb`
// builds a binary that panics at start (FerretDB issue #2982).
//
// Environment:
//
//	FERRETDB_LISTEN_ADDR  host:port to listen on (required), e.g. 127.0.0.1:27017
//	FERRETDB_SQLITE_URL   file:/existing/dir/ (required; must end with '/')
//	FERRETDB_LOG_LEVEL    debug, info, warn or error (default info)
//
// It also gives every collection table an SQLite index on the expression of
// FerretDB's _id pushdown; see indexer below.
package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", the one FerretDB uses
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(1)
}

// sqliteDir returns the directory of a file:/dir/ URL the way FerretDB's
// SQLite backend reads it (the path, else the opaque part).
func sqliteDir(sqliteURL string) string {
	u, err := url.Parse(sqliteURL)
	if err != nil {
		return strings.TrimPrefix(sqliteURL, "file:")
	}
	if u.Path != "" {
		return u.Path
	}
	return u.Opaque
}

func main() {
	addr := os.Getenv("FERRETDB_LISTEN_ADDR")
	sqliteURL := os.Getenv("FERRETDB_SQLITE_URL")
	if addr == "" || sqliteURL == "" {
		fail("FERRETDB_LISTEN_ADDR and FERRETDB_SQLITE_URL must be set")
	}
	if !strings.HasPrefix(sqliteURL, "file:") || !strings.HasSuffix(sqliteURL, "/") {
		fail("FERRETDB_SQLITE_URL must look like file:/dir/ (got %q)", sqliteURL)
	}
	dir := sqliteDir(sqliteURL)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		fail("SQLite directory of %q does not exist", sqliteURL)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("FERRETDB_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := serve(ctx, addr, sqliteURL, logger, 500*time.Millisecond); err != nil {
		fail("%v", err)
	}
}

// serve runs FerretDB until ctx is done, and the indexer beside it (one pass
// every period).
func serve(ctx context.Context, addr, sqliteURL string, logger *slog.Logger, period time.Duration) error {
	// Tables that exist already are indexed before FerretDB opens anything;
	// tables created while it runs are picked up by the loop.
	ix := newIndexer(sqliteDir(sqliteURL), logger)
	ix.pass()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		return err
	}

	ictx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ix.run(ictx, period)
	}()

	logger.Info("listening", "addr", addr, "sqlite", sqliteURL)
	err = f.Run(ctx)
	cancel()
	<-done
	return err
}

// ---- the _id pushdown index ----
//
// FerretDB v1.24 (internal/backends/sqlite) pushes a filter that is exactly
// {_id: <string or ObjectId>} down as
//
//	SELECT _ferretdb_sjson FROM "<table>" WHERE _ferretdb_sjson->'$._id' = ?
//
// and writes every update as UPDATE "<table>" SET _ferretdb_sjson = ? WHERE
// _ferretdb_sjson->'$._id' = ? (deletes: ... WHERE _ferretdb_sjson->'$._id'
// IN (...)). The unique index it creates for _id is on _ferretdb_sjson->"_id",
// an expression SQLite's planner does not match with ->'$._id', so all of
// them scan the table. The indexer adds to every collection table of every
// database a plain index on the pushdown's expression.
//
// FerretDB keeps one SQLite file per database, <dir>/<database>.sqlite (WAL,
// busy_timeout 10 s), and maps collections to tables in _ferretdb_collections
// (name, table_name, settings). Its own metadata (listIndexes, collStats)
// names only the indexes it created, so the extra index is invisible to
// clients; DROP TABLE (a dropped collection) removes it with the table.
//
// The indexer opens a database file with a connection of its own only when
// the file's schema changed (a collection was created, dropped or indexed):
// every pass it reads SQLite's schema cookie with plain file reads, from the
// newest committed page 1 in the WAL, else from the file's header, and only
// for files whose size or mtime (or their WAL's) changed. So a file is open
// only for a few milliseconds after a schema change, never for plain writes.
// That matters because FerretDB's dropDatabase closes its own connections and
// unlinks the file, unaware of ours: a drop and a new database of the same
// name while our connection is open would leave it (and the new database)
// on one -shm and -wal (SQLite finds them by path), which can damage the new
// database or crash the process with SIGBUS. FerretDB 1.24 has the same
// hazard on its own when a database is dropped while another client uses
// it; djob never drops databases. Dropped collections are harmless (DROP
// TABLE under SQLite's locks; CREATE INDEX then fails with "no such table").
//
// CREATE INDEX takes SQLite's write lock; FerretDB's writers wait for it with
// their busy timeout (10 s), readers (WAL) do not wait at all; ours waits for
// theirs the same way.

const (
	idPushdownExpr  = `_ferretdb_sjson->'$._id'` // metadata.IDColumn in FerretDB v1.24.2
	idIndexSuffix   = "_djob_id_pushdown"        // index name: <table> + suffix
	collectionsMeta = "_ferretdb_collections"
	dbFileExtension = ".sqlite"
)

// sqlQuote quotes an SQLite identifier.
func sqlQuote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// idIndexSQL is the statement that indexes table for the _id pushdown.
func idIndexSQL(table string) string {
	return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
		sqlQuote(table+idIndexSuffix), sqlQuote(table), idPushdownExpr)
}

// fileState is what the indexer knows of one database file.
type fileState struct {
	stamp   string // size and mtime of the file and of its WAL when last looked at
	version int64  // schema version all of whose tables are indexed, or -1
	wal     walScan

	failures int       // failed looks in a row
	retryAt  time.Time // after a failure: no look before
}

type indexer struct {
	dir   string
	l     *slog.Logger
	files map[string]*fileState // by path
	opens int                   // connections opened (for tests)
}

func newIndexer(dir string, l *slog.Logger) *indexer {
	return &indexer{dir: dir, l: l.With("name", "djob-id-index"), files: map[string]*fileState{}}
}

// run repeats pass every period until ctx is done.
func (ix *indexer) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ix.pass()
		}
	}
}

// stampOf describes a database file and its WAL; "" when the file is missing.
func stampOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	s := fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
	if w, err := os.Stat(path + "-wal"); err == nil {
		s += fmt.Sprintf(" wal %d/%d", w.Size(), w.ModTime().UnixNano())
	}
	return s
}

// pass looks at every database file of the directory once.
func (ix *indexer) pass() {
	entries, err := os.ReadDir(ix.dir)
	if err != nil {
		ix.l.Warn("cannot list the SQLite directory", "dir", ix.dir, "error", err)
		return
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, dbFileExtension) || e.IsDir() {
			continue
		}
		path := strings.TrimSuffix(ix.dir, "/") + "/" + name
		seen[path] = true
		st := ix.files[path]
		if st == nil {
			st = &fileState{version: -1}
			ix.files[path] = st
		}
		ix.look(path, st)
	}
	for path := range ix.files {
		if !seen[path] {
			delete(ix.files, path) // a dropped database
		}
	}
}

// look opens the file if its schema changed since its tables were indexed.
func (ix *indexer) look(path string, st *fileState) {
	defer func() {
		if r := recover(); r != nil {
			ix.l.Error("indexer panic (ignored)", "file", path, "panic", r)
		}
	}()
	stamp := stampOf(path)
	if stamp == "" || stamp == st.stamp || time.Now().Before(st.retryAt) {
		return
	}
	if cookie, ok := schemaCookie(path, &st.wal); !ok || int64(cookie) == st.version {
		st.stamp = stamp // no schema yet, or no change of it
		return
	}
	if ix.indexFile(path, st) {
		st.stamp, st.failures = stamp, 0
		return
	}
	// Try again soon, then less and less often (up to once a minute).
	st.retryAt = time.Now().Add(min(time.Second<<min(st.failures, 6), time.Minute))
	st.failures++
}

// walScan remembers how far the WAL was read.
type walScan struct {
	salt     [8]byte
	pageSize int64
	offset   int64  // of the frame after the last commit read
	cookie   uint32 // schema cookie of the newest committed page 1 in the WAL
	page1    bool   // whether the WAL holds a committed page 1
}

// schemaCookie reads SQLite's schema cookie (PRAGMA schema_version) of a
// database file without opening it as a database: from the newest committed
// page 1 in the WAL when the WAL holds one, else from the file's header. ok
// is false when the file holds no schema yet.
func schemaCookie(path string, w *walScan) (cookie uint32, ok bool) {
	if f, err := os.Open(path + "-wal"); err != nil {
		*w = walScan{}
	} else {
		w.read(f)
		_ = f.Close()
	}
	if w.page1 {
		return w.cookie, true
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var hdr [100]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[:16]) != "SQLite format 3\x00" {
		return 0, false
	}
	return binary.BigEndian.Uint32(hdr[40:44]), true
}

// read scans the frames committed to the WAL since the last read
// (https://www.sqlite.org/fileformat.html#the_write_ahead_log). Frames of a
// transaction not committed yet are read again next time: they may be
// rolled back and overwritten.
func (w *walScan) read(f *os.File) {
	var hdr [32]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		*w = walScan{}
		return
	}
	if m := binary.BigEndian.Uint32(hdr[0:4]); m != 0x377f0682 && m != 0x377f0683 {
		*w = walScan{}
		return
	}
	pageSize := int64(binary.BigEndian.Uint32(hdr[8:12]))
	if pageSize < 512 || pageSize > 65536 {
		*w = walScan{}
		return
	}
	if w.offset == 0 || w.pageSize != pageSize || string(w.salt[:]) != string(hdr[16:24]) {
		// A new WAL (it restarts after a checkpoint, with new salts).
		*w = walScan{pageSize: pageSize, offset: 32}
		copy(w.salt[:], hdr[16:24])
	}
	var fh [24]byte
	var c [4]byte
	off, page1At := w.offset, int64(-1) // page1At: the newest page 1 frame since the last commit
	for {
		if _, err := f.ReadAt(fh[:], off); err != nil {
			return
		}
		if string(fh[8:16]) != string(w.salt[:]) {
			return // the end of this WAL's frames (older ones follow, or none)
		}
		if binary.BigEndian.Uint32(fh[0:4]) == 1 {
			page1At = off
		}
		off += 24 + w.pageSize
		if binary.BigEndian.Uint32(fh[4:8]) == 0 {
			continue
		}
		// A commit frame: SQLite wrote it after the frames before it, so
		// their pages are complete now.
		if page1At >= 0 {
			if _, err := f.ReadAt(c[:], page1At+24+40); err != nil {
				return
			}
			w.cookie, w.page1 = binary.BigEndian.Uint32(c[:]), true
			page1At = -1
		}
		w.offset = off
	}
}

// indexFile indexes the tables of one database file that lack the index. It
// returns true when the file needs no further look until it changes again.
func (ix *indexer) indexFile(path string, st *fileState) (complete bool) {
	ctx := context.Background()
	// mode=rw: never create a file (a database dropped since the listing
	// stays dropped).
	dsn := (&url.URL{Scheme: "file", Opaque: path, RawQuery: "mode=rw&_pragma=busy_timeout(10000)"}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		ix.l.Warn("cannot open database file", "file", path, "error", err)
		return false
	}
	db.SetMaxOpenConns(1)
	ix.opens++
	ix.l.Debug("schema changed: looking at the tables", "file", path)
	var opened os.FileInfo
	defer func() {
		// A database dropped and created again under the same name while
		// this connection was open: the -wal and -shm at the path are the
		// new database's now, and closing the last connection to the old one
		// would delete them. Leave the connection open instead (it is idle).
		if now, err := os.Stat(path); opened != nil && err == nil && !os.SameFile(opened, now) {
			ix.l.Warn("database file replaced while indexing; leaving the old connection open", "file", path)
			return
		}
		_ = db.Close()
	}()

	var version int64
	if err = db.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&version); err != nil {
		ix.l.Debug("cannot read the schema version", "file", path, "error", err)
		return false
	}
	opened, _ = os.Stat(path)
	if version == st.version {
		return true
	}

	tables, err := queryStrings(ctx, db, "SELECT table_name FROM "+sqlQuote(collectionsMeta))
	if err != nil {
		// A database FerretDB is creating right now, or a file that is not
		// one of FerretDB's: looked at again when its schema changes.
		ix.l.Debug("no collections table", "file", path, "error", err)
		st.version = version
		return true
	}
	indexes, err := queryStrings(ctx, db, "SELECT name FROM sqlite_master WHERE type = 'index'")
	if err != nil {
		ix.l.Warn("cannot list indexes", "file", path, "error", err)
		return false
	}
	have := map[string]bool{}
	for _, n := range indexes {
		have[n] = true
	}

	complete = true
	created := 0
	for _, t := range tables {
		if have[t+idIndexSuffix] {
			continue
		}
		start := time.Now()
		if _, err = db.ExecContext(ctx, idIndexSQL(t)); err != nil {
			if strings.Contains(err.Error(), "no such table") {
				ix.l.Debug("table dropped before it was indexed", "file", path, "table", t)
				continue
			}
			ix.l.Warn("cannot create the _id pushdown index", "file", path, "table", t, "error", err)
			complete = false
			continue
		}
		created++
		ix.l.Info("created the _id pushdown index", "file", path, "table", t,
			"index", t+idIndexSuffix, "took", time.Since(start).Round(time.Microsecond))
	}
	if !complete {
		return false
	}
	// Each CREATE INDEX adds one to the schema version: if nothing else
	// changed the schema meanwhile, the new version is done too; else the
	// next look reads the tables again.
	st.version = version
	var after int64
	if created > 0 && db.QueryRowContext(ctx, "PRAGMA schema_version").Scan(&after) == nil && after == version+int64(created) {
		st.version = after
	}
	return true
}

func queryStrings(ctx context.Context, db *sql.DB, q string) ([]string, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var res []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		res = append(res, s)
	}
	return res, rows.Err()
}
