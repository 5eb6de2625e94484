// Package wiretest is a scripted MongoDB wire-protocol server for tests:
// it answers the driver's handshake and heartbeats like a standalone
// server (or a mongos, or a replica-set member, as a test sets it up),
// answers every other command with the reply a test scripts for it, and
// records what the driver sent.
//
// It exists for the cases a real test server cannot produce on demand:
// error codes such as 50 (MaxTimeMSExpired), 133 and 202 (from mongos),
// 134, a write-concern error, a primary that stops answering. Everything
// else is tested against FerretDB (package mongotest).
//
// Only tests import this package; the module Caddy builds never does.
package wiretest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// maxMessage bounds a message the server reads (MongoDB's own limit).
const maxMessage = 48_000_000

// Command is one command the driver sent.
type Command struct {
	// Name is the command name: the first field of the body.
	Name string
	// Database is the database it was sent to ($db).
	Database string
	// Body is the command document.
	Body bson.Raw
	// Documents holds the documents of OP_MSG document sequences
	// (the "documents" of an insert, the "updates" of an update, ...),
	// by sequence identifier.
	Documents map[string][]bson.Raw
}

// Reply is how the server answers one command.
type Reply struct {
	// Doc is the reply document. "ok": 1 is added when it has no "ok".
	Doc bson.D
	// Stall leaves the command unanswered until the driver gives up and
	// closes the connection, or the server closes: a stalled primary.
	Stall bool
	// Close closes the connection without answering: a network error.
	Close bool
}

// Handler scripts the reply to a command.
type Handler func(Command) Reply

// OK is the reply {ok: 1} with fields added.
func OK(fields ...bson.E) Reply {
	return Reply{Doc: append(bson.D{{Key: "ok", Value: 1.0}}, fields...)}
}

// Error is a command error reply as MongoDB sends it: ok 0, the code, its
// name, a message and the error labels.
func Error(code int32, codeName string, labels ...string) Reply {
	d := bson.D{
		{Key: "ok", Value: 0.0},
		{Key: "errmsg", Value: "scripted " + codeName},
		{Key: "code", Value: code},
		{Key: "codeName", Value: codeName},
	}
	if len(labels) > 0 {
		d = append(d, bson.E{Key: "errorLabels", Value: labels})
	}
	return Reply{Doc: d}
}

// WriteConcernError is the reply to a write that was applied on the
// primary but whose write concern failed (code 64 is a wtimeout: the
// outcome elsewhere is unknown).
func WriteConcernError(n int32, code int32, codeName string) Reply {
	return OK(
		bson.E{Key: "n", Value: n},
		bson.E{Key: "nModified", Value: n},
		bson.E{Key: "writeConcernError", Value: bson.D{
			{Key: "code", Value: code},
			{Key: "codeName", Value: codeName},
			{Key: "errmsg", Value: "scripted write concern error"},
			{Key: "errInfo", Value: bson.D{{Key: "wtimeout", Value: true}}},
		}},
	)
}

// Server is a scripted MongoDB wire-protocol server on 127.0.0.1.
type Server struct {
	ln     net.Listener
	closed chan struct{}
	wg     sync.WaitGroup
	connID atomic.Int32

	mu       sync.Mutex
	handlers map[string]Handler
	hello    bson.D
	received []Command
	conns    map[net.Conn]struct{}
}

// New starts a server that answers like a standalone MongoDB 7.0 and
// closes it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("wiretest: listen: %v", err)
	}
	s := &Server{
		ln:       ln,
		closed:   make(chan struct{}),
		handlers: map[string]Handler{},
		conns:    map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.Close)
	return s
}

// URI is a connection string for the server, with a direct connection so
// the driver does not look for other members.
func (s *Server) URI() string {
	return "mongodb://" + s.ln.Addr().String() + "/?directConnection=true"
}

// Handle scripts the replies to the command name (case-insensitive),
// replacing any earlier script for it.
func (s *Server) Handle(name string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[strings.ToLower(name)] = h
}

// HelloFields adds fields to (or replaces fields of) the handshake and
// heartbeat reply, for example {msg: "isdbgrid"} to be a mongos or
// {setName: "rs0", hosts: [...]} to be a replica-set primary.
func (s *Server) HelloFields(fields ...bson.E) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range fields {
		s.hello = setField(s.hello, f)
	}
}

func setField(d bson.D, f bson.E) bson.D {
	for i := range d {
		if d[i].Key == f.Key {
			d[i] = f
			return d
		}
	}
	return append(d, f)
}

// Commands returns the commands received so far, in order, without the
// handshakes and heartbeats (hello, isMaster).
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Command(nil), s.received...)
}

// CommandsNamed returns the received commands called name.
func (s *Server) CommandsNamed(name string) []Command {
	var out []Command
	for _, c := range s.Commands() {
		if strings.EqualFold(c.Name, name) {
			out = append(out, c)
		}
	}
	return out
}

// Close stops the server, closes every connection (unblocking stalled
// commands) and waits for its goroutines. It is safe to call twice.
func (s *Server) Close() {
	select {
	case <-s.closed:
		return
	default:
	}
	close(s.closed)
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// serve answers the messages of one connection until it closes.
func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	id := s.connID.Add(1)
	r := bufio.NewReader(c)
	for {
		msg, err := readMessage(r)
		if err != nil {
			return
		}
		out, keepOpen := s.answer(msg, id)
		if !keepOpen {
			return
		}
		if out == nil { // stalled: wait until the driver or the server closes
			io.Copy(io.Discard, r)
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func readMessage(r *bufio.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(size[:])
	if n < 16 || n > maxMessage {
		return nil, fmt.Errorf("wiretest: bad message length %d", n)
	}
	msg := make([]byte, n)
	copy(msg, size[:])
	_, err := io.ReadFull(r, msg[4:])
	return msg, err
}

// answer builds the reply to one message; nil means stall, and keepOpen
// false means close the connection.
func (s *Server) answer(msg []byte, connID int32) (out []byte, keepOpen bool) {
	_, reqID, _, op, rest, ok := wiremessage.ReadHeader(msg)
	if !ok {
		return nil, false
	}
	var cmd Command
	var err error
	switch op {
	case opQuery:
		cmd, err = parseQuery(rest)
	case wiremessage.OpMsg:
		cmd, err = parseMsg(rest)
	default:
		err = fmt.Errorf("wiretest: unsupported op code %v", op)
	}
	if err != nil {
		return nil, false
	}
	reply := s.reply(cmd, connID)
	switch {
	case reply.Close:
		return nil, false
	case reply.Stall:
		return nil, true
	}
	doc, err := bson.Marshal(withOK(reply.Doc))
	if err != nil {
		panic(fmt.Sprintf("wiretest: scripted reply: %v", err))
	}
	if op == opQuery {
		return opReply(reqID, doc), true
	}
	return opMsg(reqID, doc), true
}

func withOK(d bson.D) bson.D {
	for _, e := range d {
		if e.Key == "ok" {
			return d
		}
	}
	return append(d, bson.E{Key: "ok", Value: 1.0})
}

// reply finds the reply for cmd: the handshake, a script, or an error
// saying nothing was scripted.
func (s *Server) reply(cmd Command, connID int32) Reply {
	name := strings.ToLower(cmd.Name)
	s.mu.Lock()
	h, scripted := s.handlers[name]
	hello := append(bson.D(nil), s.hello...)
	if name != "hello" && name != "ismaster" {
		s.received = append(s.received, cmd)
	}
	s.mu.Unlock()
	switch {
	case scripted:
		return h(cmd)
	case name == "hello" || name == "ismaster":
		return helloReply(hello, connID)
	case name == "ping" || name == "endsessions" || name == "buildinfo" || name == "createindexes":
		return OK()
	}
	return Error(59, "CommandNotFound")
}

// helloReply is a standalone MongoDB 7.0's handshake reply with extra
// fields applied.
func helloReply(extra bson.D, connID int32) Reply {
	d := bson.D{
		{Key: "helloOk", Value: true},
		{Key: "ismaster", Value: true},
		{Key: "isWritablePrimary", Value: true},
		{Key: "maxBsonObjectSize", Value: int32(16 * 1024 * 1024)},
		{Key: "maxMessageSizeBytes", Value: int32(maxMessage)},
		{Key: "maxWriteBatchSize", Value: int32(100000)},
		{Key: "localTime", Value: time.Now()},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "connectionId", Value: connID},
		{Key: "minWireVersion", Value: int32(0)},
		{Key: "maxWireVersion", Value: int32(21)},
		{Key: "readOnly", Value: false},
	}
	for _, f := range extra {
		d = setField(d, f)
	}
	return Reply{Doc: d}
}

// opQuery is OP_QUERY: deprecated for commands, but still the driver's
// first handshake message on a connection, so the server must read it.
const opQuery wiremessage.OpCode = 2004

// parseQuery reads an OP_QUERY: flags, the namespace ("admin.$cmd"), the
// skip and limit, then the command (maybe wrapped in $query).
func parseQuery(b []byte) (Command, error) {
	short := errors.New("wiretest: short OP_QUERY")
	if len(b) < 4 {
		return Command{}, short
	}
	b = b[4:] // flags
	nul := bytes.IndexByte(b, 0)
	if nul < 0 || len(b) < nul+1+8 {
		return Command{}, short
	}
	ns := string(b[:nul])
	query, _, ok := bsoncore.ReadDocument(b[nul+1+8:])
	if !ok {
		return Command{}, short
	}
	if inner, err := query.LookupErr("$query"); err == nil {
		if d, ok := inner.DocumentOK(); ok {
			query = d
		}
	}
	db, _, _ := strings.Cut(ns, ".")
	return command(query, db)
}

// parseMsg reads an OP_MSG: its body and document sequences.
func parseMsg(b []byte) (Command, error) {
	_, b, ok := wiremessage.ReadMsgFlags(b)
	if !ok {
		return Command{}, errors.New("wiretest: short OP_MSG")
	}
	var body bsoncore.Document
	seqs := map[string][]bson.Raw{}
	for len(b) > 0 {
		var typ wiremessage.SectionType
		if typ, b, ok = wiremessage.ReadMsgSectionType(b); !ok {
			return Command{}, errors.New("wiretest: bad OP_MSG section")
		}
		switch typ {
		case wiremessage.SingleDocument:
			if body, b, ok = wiremessage.ReadMsgSectionSingleDocument(b); !ok {
				return Command{}, errors.New("wiretest: bad OP_MSG body")
			}
		case wiremessage.DocumentSequence:
			var id string
			var docs []bsoncore.Document
			if id, docs, b, ok = wiremessage.ReadMsgSectionDocumentSequence(b); !ok {
				return Command{}, errors.New("wiretest: bad OP_MSG document sequence")
			}
			for _, d := range docs {
				seqs[id] = append(seqs[id], bson.Raw(d))
			}
		default:
			return Command{}, fmt.Errorf("wiretest: OP_MSG section kind %v", typ)
		}
	}
	db, _ := body.Lookup("$db").StringValueOK()
	cmd, err := command(body, db)
	cmd.Documents = seqs
	return cmd, err
}

func command(body bsoncore.Document, db string) (Command, error) {
	first, err := body.IndexErr(0)
	if err != nil {
		return Command{}, errors.New("wiretest: empty command")
	}
	return Command{Name: first.Key(), Database: db, Body: append(bson.Raw(nil), body...)}, nil
}

// opReply frames doc as the OP_REPLY to request reqID.
func opReply(reqID int32, doc []byte) []byte {
	idx, b := wiremessage.AppendHeaderStart(nil, wiremessage.NextRequestID(), reqID, wiremessage.OpReply)
	b = wiremessage.AppendReplyFlags(b, 0)
	b = wiremessage.AppendReplyCursorID(b, 0)
	b = wiremessage.AppendReplyStartingFrom(b, 0)
	b = wiremessage.AppendReplyNumberReturned(b, 1)
	b = append(b, doc...)
	return bsoncore.UpdateLength(b, idx, int32(len(b[idx:])))
}

// opMsg frames doc as the OP_MSG answering request reqID.
func opMsg(reqID int32, doc []byte) []byte {
	idx, b := wiremessage.AppendHeaderStart(nil, wiremessage.NextRequestID(), reqID, wiremessage.OpMsg)
	b = wiremessage.AppendMsgFlags(b, 0)
	b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	b = append(b, doc...)
	return bsoncore.UpdateLength(b, idx, int32(len(b[idx:])))
}
