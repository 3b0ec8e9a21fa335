// Command ferretdb runs FerretDB v1 with its SQLite backend for the djob dev
// stack. It embeds the ferretdb package because `go install .../cmd/ferretdb`
// builds a binary that panics at start (FerretDB issue #2982).
//
// Environment:
//
//	FERRETDB_LISTEN_ADDR  host:port to listen on (required), e.g. 127.0.0.1:27017
//	FERRETDB_SQLITE_URL   file:/existing/dir/ (required; must end with '/')
//	FERRETDB_LOG_LEVEL    debug, info, warn or error (default info)
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ferretdb: "+format+"\n", args...)
	os.Exit(1)
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
	if st, err := os.Stat(strings.TrimPrefix(sqliteURL, "file:")); err != nil || !st.IsDir() {
		fail("SQLite directory of %q does not exist", sqliteURL)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("FERRETDB_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		fail("%v", err)
	}
	logger.Info("listening", "addr", addr, "sqlite", sqliteURL)
	if err := f.Run(ctx); err != nil {
		fail("%v", err)
	}
}
