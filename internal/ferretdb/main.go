// Command ferretdb runs an embedded FerretDB (SQLite handler) as a stand-in
// MongoDB for the caddy-session tests.
//
// It lives in its own Go module so that FerretDB and its large dependency
// tree never enter the main module's go.mod; internal/mongotest builds it
// with `go build` when MONGODB_URI is not set.
//
// Usage:
//
//	ferretdb -listen 127.0.0.1:27017 -dir /tmp/ferretdb-data
//
// Once the listener accepts connections it prints one line to stdout:
//
//	ferretdb ready mongodb://127.0.0.1:27017/
//
// Commands pass through a small proxy that lets one command at a time
// reach FerretDB, because FerretDB 1.x does not update a document
// atomically (see serialize.go).
//
// SIGTERM or SIGINT stops it; it exits 0 after closing the listener and the
// SQLite backend.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on (port 0 picks a free one)")
	dir := flag.String("dir", "", "directory for the SQLite databases (required)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	flag.Parse()

	if err := run(*listen, *dir, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "ferretdb:", err)
		os.Exit(1)
	}
}

func run(listen, dir, logLevel string) error {
	if dir == "" {
		return fmt.Errorf("-dir is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	// Logs go to stderr so stdout carries only the ready line the test
	// helper waits for.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Bind the public address first so a taken port fails fast and -listen
	// with port 0 picks the port the ready line reports.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer ln.Close()

	// FerretDB itself listens on a private loopback port behind the
	// serializer (see serialize.go).
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Logger:   logger,
		Handler:  "sqlite",
		// FerretDB wants a file: URI naming a directory, with the
		// trailing slash.
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// MongoDBURI blocks until Run has bound FerretDB's listener, so once
	// it returns the backend accepts connections.
	u, err := url.Parse(f.MongoDBURI())
	if err != nil {
		return err
	}
	ser := &serializer{ln: ln, backend: u.Host}
	served := make(chan struct{})
	go func() {
		ser.serve(ctx)
		close(served)
	}()

	fmt.Printf("ferretdb ready mongodb://%s/\n", ln.Addr())

	err = <-done
	stop() // FerretDB may have stopped on its own: stop the serializer too
	<-served
	return err
}
