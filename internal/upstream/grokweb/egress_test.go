package grokweb_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/grokproxy/grokproxy/internal/secret"
	"github.com/grokproxy/grokproxy/internal/upstream"
	"github.com/grokproxy/grokproxy/internal/upstream/grokweb"
)

// tunnelProxy is a loopback proxy that counts the tunnels it opened.
type tunnelProxy struct {
	ln      net.Listener
	tunnels atomic.Int32
}

func (p *tunnelProxy) URL(scheme string) string { return scheme + "://" + p.ln.Addr().String() }

// startProxy serves HTTP CONNECT, or SOCKS5 without authentication when
// socks is true, until the test ends.
func startProxy(t *testing.T, socks bool) *tunnelProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tunnelProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				target, ok := "", false
				if socks {
					target, ok = socksHandshake(conn)
				} else {
					target, ok = connectHandshake(conn)
				}
				if !ok {
					return
				}
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				p.tunnels.Add(1)
				go io.Copy(up, conn)
				io.Copy(conn, up)
			}()
		}
	}()
	return p
}

func connectHandshake(conn net.Conn) (string, bool) {
	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil || req.Method != http.MethodConnect {
		return "", false
	}
	_, err = io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	return req.Host, err == nil
}

// socksHandshake speaks the no-authentication SOCKS5 CONNECT of RFC 1928.
func socksHandshake(conn net.Conn) (string, bool) {
	head := make([]byte, 2)
	if _, err := io.ReadFull(conn, head); err != nil || head[0] != 5 {
		return "", false
	}
	if _, err := io.ReadFull(conn, make([]byte, head[1])); err != nil {
		return "", false
	}
	conn.Write([]byte{5, 0})
	req := make([]byte, 4)
	if _, err := io.ReadFull(conn, req); err != nil || req[1] != 1 {
		return "", false
	}
	var host string
	switch req[3] {
	case 1:
		ip := make([]byte, 4)
		io.ReadFull(conn, ip)
		host = net.IP(ip).String()
	case 3:
		n := make([]byte, 1)
		io.ReadFull(conn, n)
		name := make([]byte, n[0])
		io.ReadFull(conn, name)
		host = string(name)
	default:
		return "", false
	}
	port := make([]byte, 2)
	if _, err := io.ReadFull(conn, port); err != nil {
		return "", false
	}
	conn.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port)))), true
}

func TestSessionsDialThroughTheirOwnProxy(t *testing.T) {
	for _, profile := range []string{grokweb.TLSProfileGo, grokweb.TLSProfileChrome} {
		for _, transport := range []string{grokweb.TransportREST, grokweb.TransportWS} {
			t.Run(profile+"/"+transport, func(t *testing.T) {
				_, srv, _, _ := startTLSEmulator(t)
				httpProxy, socksProxy := startProxy(t, false), startProxy(t, true)
				c := grokweb.New(grokweb.Config{BaseURL: srv.URL, RootCAs: roots(srv), TLSProfile: profile,
					Transport: transport})

				a := upstream.Credential{SessionID: "a", Secret: secret.New(emuSSO), ProxyURL: secret.New(httpProxy.URL("http"))}
				b := upstream.Credential{SessionID: "b", Secret: secret.New(emuSSO), ProxyURL: secret.New(socksProxy.URL("socks5"))}

				chatAs(t, c, a)
				if httpProxy.tunnels.Load() == 0 || socksProxy.tunnels.Load() != 0 {
					t.Fatalf("after session a: HTTP proxy %d tunnels, SOCKS5 proxy %d; want only the HTTP proxy",
						httpProxy.tunnels.Load(), socksProxy.tunnels.Load())
				}
				before := httpProxy.tunnels.Load()
				chatAs(t, c, b)
				if socksProxy.tunnels.Load() == 0 || httpProxy.tunnels.Load() != before {
					t.Fatalf("after session b: HTTP proxy %d tunnels (was %d), SOCKS5 proxy %d; want only the SOCKS5 proxy",
						httpProxy.tunnels.Load(), before, socksProxy.tunnels.Load())
				}
			})
		}
	}
}

func chatAs(t *testing.T, c *grokweb.Client, cred upstream.Credential) {
	t.Helper()
	s, err := c.Chat(ctx(t), cred, userChatReq("hello"))
	if err != nil {
		t.Fatalf("Chat as %s: %v", cred.SessionID, err)
	}
	if _, err := readAll(t, s); err != nil {
		t.Fatalf("stream as %s: %v", cred.SessionID, err)
	}
}
