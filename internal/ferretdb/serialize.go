package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// FerretDB 1.x on SQLite runs an update as a query followed by a write,
// with no transaction around them, so two concurrent updates of the same
// document can lose one of them. MongoDB applies a single-document update
// atomically, and the session store relies on that (two requests that
// change different keys of one session must both land). serializer makes
// the stand-in honour the same guarantee: it sits in front of FerretDB
// and lets one command at a time through, across all connections. Tests
// lose nothing by it: real concurrency is exercised against MongoDB when
// MONGODB_URI is set.
type serializer struct {
	ln      net.Listener
	backend string // FerretDB's own address

	mu sync.Mutex // held from forwarding a command until its reply is read

	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// wire protocol header: messageLength, requestID, responseTo, opCode
// (all little-endian int32).
const headerLen = 16

// opMsg is OP_MSG; its flagBits follow the header. moreToCome (bit 1) on
// a request means the client expects no reply.
const (
	opMsg      = 2013
	moreToCome = 1 << 1
	maxMessage = 48 << 20 // MongoDB's maxMessageSizeBytes
)

func (s *serializer) serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		s.ln.Close()
		s.connsMu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.connsMu.Unlock()
	}()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
	s.wg.Wait()
}

func (s *serializer) track(c net.Conn, add bool) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func (s *serializer) handle(client net.Conn) {
	defer client.Close()
	backend, err := net.Dial("tcp", s.backend)
	if err != nil {
		return
	}
	defer backend.Close()
	s.track(client, true)
	s.track(backend, true)
	defer s.track(client, false)
	defer s.track(backend, false)

	for {
		req, err := readMessage(client)
		if err != nil {
			return
		}
		if err := s.roundTrip(req, backend, client); err != nil {
			return
		}
	}
}

// roundTrip forwards one request and, unless the client asked for no
// reply, copies the reply back, all under the global lock.
func (s *serializer) roundTrip(req []byte, backend, client net.Conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := backend.Write(req); err != nil {
		return err
	}
	if opCode(req) == opMsg && len(req) >= headerLen+4 &&
		binary.LittleEndian.Uint32(req[headerLen:])&moreToCome != 0 {
		return nil
	}
	resp, err := readMessage(backend)
	if err != nil {
		return err
	}
	_, err = client.Write(resp)
	return err
}

func opCode(msg []byte) int32 {
	return int32(binary.LittleEndian.Uint32(msg[12:16]))
}

func readMessage(r io.Reader) ([]byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(int32(binary.LittleEndian.Uint32(hdr[:4])))
	if n < headerLen || n > maxMessage {
		return nil, errors.New(fmt.Sprint("bad message length ", n))
	}
	msg := make([]byte, n)
	copy(msg, hdr[:])
	if _, err := io.ReadFull(r, msg[headerLen:]); err != nil {
		return nil, err
	}
	return msg, nil
}
