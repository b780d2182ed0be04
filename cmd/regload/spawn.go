package main

// --spawn: run regbridge as a child process on free loopback ports, with
// its configuration in REGBRIDGE_* variables, wait for /readyz, and stop it
// with SIGTERM at the end (it then sends every subscription a final
// NOTIFY, which regload's readers still answer).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	readyTimeout = 30 * time.Second
	// stopTimeout bounds regbridge's shutdown (its drain defaults to 5 s).
	stopTimeout = 15 * time.Second
)

type child struct {
	cmd     *exec.Cmd
	logPath string
	sip     string // host:port, UDP and TCP
	tls     string // host:port, TLS (a self-signed certificate)
	ws, wss string // host:port, WebSocket, and over TLS
	exited  chan struct{}
	err     error // set before exited closes
}

// spawnRegbridge starts the binary at path with the store source (a
// REGBRIDGE_SOURCE value) and waits until it is ready.
func spawnRegbridge(ctx context.Context, path, source, dir string, cfg *config) (*child, error) {
	// SIP (UDP and TCP), HTTP, TLS, WS, WSS.
	var addrs [5]string
	for i := range addrs {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	certFile, keyFile, err := writeSelfSigned(dir)
	if err != nil {
		return nil, err
	}
	c := &child{
		sip: addrs[0], tls: addrs[2], ws: addrs[3], wss: addrs[4],
		logPath: filepath.Join(dir, "regbridge.log"),
		exited:  make(chan struct{}),
	}
	httpAddr := addrs[1]
	env := map[string]string{
		"REGBRIDGE_SOURCE":        source,
		"REGBRIDGE_SIP_LISTEN":    "udp://" + c.sip + ",tcp://" + c.sip + ",tls://" + c.tls + ",ws://" + c.ws + ",wss://" + c.wss,
		"REGBRIDGE_TLS_CERT":      certFile,
		"REGBRIDGE_TLS_KEY":       keyFile,
		"REGBRIDGE_HTTP_LISTEN":   httpAddr,
		"REGBRIDGE_POLL_INTERVAL": cfg.pollInterval.String(),
		"REGBRIDGE_LOG_LEVEL":     "warn",
	}
	if u, err := url.Parse(cfg.pprofURL); err == nil && cfg.pprofURL != "" {
		// Serve the profiler where --pprof-url will ask for it.
		env["REGBRIDGE_HTTP_LISTEN"] = u.Host
		env["REGBRIDGE_PPROF"] = "true"
	}
	for _, kv := range cfg.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	// Readiness is asked where regbridge really listens, also when --env
	// or --pprof-url chose the address.
	httpAddr = env["REGBRIDGE_HTTP_LISTEN"]
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGBRIDGE_") {
			environ = append(environ, kv)
		}
	}
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	// A relative path would be taken relative to Dir.
	if abs, err := filepath.Abs(path); err == nil && strings.ContainsRune(path, filepath.Separator) {
		path = abs
	}
	c.cmd = exec.Command(path)
	c.cmd.Env = environ
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.Dir = dir
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", path, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.exited)
	}()

	deadline := time.Now().Add(readyTimeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if res, err := client.Get("http://" + httpAddr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("regbridge exited at start (%v):\n%s", c.err, c.logTail())
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("regbridge not ready within %v:\n%s", readyTimeout, c.logTail())
		}
	}
}

// stop sends SIGTERM and waits for the exit, killing after stopTimeout.
// It returns the exit error (nil for a clean exit).
func (c *child) stop() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return errors.New("regbridge did not stop on SIGTERM; killed")
	}
	return c.err
}

// logTail returns the end of regbridge's log.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1.
func freePort() (int, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}
