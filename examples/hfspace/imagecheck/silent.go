package main

import (
	"net"
	"sync"
	"sync/atomic"
)

// silentServer is a hung database: a loopback listener that accepts
// connections, reads nothing and answers nothing until it is closed.
type silentServer struct {
	ln       net.Listener
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// listenSilent starts a silent server on a free loopback port.
func listenSilent() (*silentServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &silentServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// port is the listener's port.
func (s *silentServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// close stops accepting, closes every held connection and waits for the
// accept loop; safe to call more than once.
func (s *silentServer) close() {
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}
