package integration

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// TestNetLab checks the namespace network itself: a home host reaches the
// public segment behind its router's address; nothing from outside gets
// in; an endpoint-independent NAT gives one socket the same outside port
// towards every destination, a symmetric one a different port each time.
func TestNetLab(t *testing.T) {
	lab := newNetLab(t)
	a := lab.public("pa", 31)
	b := lab.public("pb", 32)
	eim := lab.home("he", 1, natEIM)
	sym := lab.home("hs", 2, natSymmetric)

	// Two UDP listeners on the public segment report the source address
	// of what they receive.
	listen := func(h *labHost) (*net.UDPConn, <-chan string) {
		var c *net.UDPConn
		if err := inNS(h.nsPath(), func() error {
			var err error
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(h.ip)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		from := make(chan string, 16)
		go func() {
			buf := make([]byte, 64)
			for {
				_, addr, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				from <- addr.String()
			}
		}()
		return c, from
	}
	ca, fromA := listen(a)
	cb, fromB := listen(b)
	seen := func(ch <-chan string) string {
		select {
		case s := <-ch:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("datagram not received")
		}
		return ""
	}
	outside := func(h *labHost) (portA, portB string) {
		var c *net.UDPConn
		if err := inNS(h.nsPath(), func() error {
			var err error
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(h.ip)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteToUDP([]byte("x"), ca.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		sa := seen(fromA)
		if _, err := c.WriteToUDP([]byte("x"), cb.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
		sb := seen(fromB)
		hostA, pa, _ := net.SplitHostPort(sa)
		hostB, pb, _ := net.SplitHostPort(sb)
		if hostA != h.wan || hostB != h.wan {
			t.Fatalf("%s's datagrams came from %s and %s, want its router's %s", h.ns, sa, sb, h.wan)
		}
		return pa, pb
	}
	if pa, pb := outside(eim); pa != pb {
		t.Errorf("endpoint-independent NAT mapped one socket to ports %s and %s", pa, pb)
	}
	if pa, pb := outside(sym); pa == pb {
		t.Errorf("symmetric NAT mapped one socket to port %s for both destinations", pa)
	}

	// Inbound: a TCP listener behind the NAT is not reachable at the
	// router's address (the SYN is dropped: the dial times out, no RST).
	var ln net.Listener
	if err := inNS(eim.nsPath(), func() error {
		var err error
		ln, err = net.Listen("tcp4", eim.ip+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err := inNS(a.nsPath(), func() error {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", eim.wan, port), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("dialling into the NAT: %v, want a timeout (dropped)", err)
	}
	// Outbound TCP works.
	var pl net.Listener
	if err := inNS(a.nsPath(), func() error {
		var err error
		pl, err = net.Listen("tcp4", a.ip+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	if err := inNS(sym.nsPath(), func() error {
		c, err := net.DialTimeout("tcp4", pl.Addr().String(), 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Errorf("dialling out of the NAT: %v", err)
	}
}
