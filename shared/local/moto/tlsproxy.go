package moto

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// TLSProxy is an HTTPS reverse proxy on 127.0.0.1 in front of a plain-HTTP moto_server.
// pgBackRest speaks HTTPS only, and `moto_server -s` breaks its uploads; a proxy that terminates
// TLS with a throwaway self-signed certificate works (clients must skip verification).
type TLSProxy struct {
	// Port is the proxy's TCP port on 127.0.0.1.
	Port int
	// URL is https://127.0.0.1:<Port>.
	URL string

	srv  *http.Server
	done chan struct{}
}

// StartTLSProxy serves HTTPS on a free port of 127.0.0.1 and forwards every request to target
// (e.g. a Server's URL) until Close.
func StartTLSProxy(target string) (*TLSProxy, error) {
	srv, err := newProxyServer(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the TLS proxy: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	p := &TLSProxy{Port: port, URL: "https://127.0.0.1:" + strconv.Itoa(port), srv: srv, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		if err := srv.Serve(tls.NewListener(ln, srv.TLSConfig)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("TLS proxy stopped", "port", port, "error", err.Error())
		}
	}()
	return p, nil
}

// Close stops the proxy and its open connections.
func (p *TLSProxy) Close() {
	_ = p.srv.Close()
	<-p.done
}

// ServeTLSProxy runs the proxy on listenAddr (host:port) in the foreground until ctx is done,
// for use as a long-lived process. It returns nil after a shutdown that ctx asked for.
func ServeTLSProxy(ctx context.Context, listenAddr, target string) error {
	srv, err := newProxyServer(target)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("listen for the TLS proxy on %s: %w", listenAddr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve TLS proxy on %s: %w", listenAddr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve TLS proxy on %s: %w", listenAddr, err)
	}
	return nil
}

func newProxyServer(target string) (*http.Server, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("parse proxy target %q: %w", target, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("proxy target %q: want http://host:port", target)
	}
	cert, err := selfSignedCert()
	if err != nil {
		return nil, err
	}
	// The inbound Host header is passed through untouched: S3 clients sign it.
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)
	return &http.Server{
		Handler:           rp,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}, nil
}

// selfSignedCert makes an in-memory certificate for 127.0.0.1, ::1 and localhost.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate proxy key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pgfleet local moto proxy"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create proxy certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
