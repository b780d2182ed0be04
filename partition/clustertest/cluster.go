// Package clustertest starts a local Redis Cluster for tests: three
// masters and three replicas, each a redis-server process with
// --cluster-enabled on its own loopback port and temporary directory,
// joined by redis-cli --cluster create. It never touches a Redis it did
// not start.
package clustertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a running local Redis Cluster.
type Cluster struct {
	t     testing.TB
	Addrs []string // every node, masters and replicas, as host:port

	procsMu sync.Mutex
	procs   map[string]*exec.Cmd
	killed  bool // a master was killed: its promoted replica has none
}

// nodeTimeout is the cluster-node-timeout: a killed master's replica is
// promoted a little after it.
const nodeTimeout = 1000 * time.Millisecond

// Start runs a cluster of three masters with one replica each and waits
// until every node reports cluster_state:ok. It fails the test when CI is
// set and redis-server or redis-cli is missing; otherwise it skips. All
// processes are killed and their directories removed at cleanup, also
// when the test fails half-way. The Cluster's methods fail t: call them
// from t's goroutine, not from its subtests.
func Start(t testing.TB) *Cluster {
	t.Helper()
	for _, tool := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed for the Redis Cluster test: %v", tool, err)
			}
			t.Skipf("%s not installed: skipping the Redis Cluster test", tool)
		}
	}
	c := &Cluster{t: t, procs: map[string]*exec.Cmd{}}
	t.Cleanup(c.stopAll)
	dir := t.TempDir()
	for i, port := range freePorts(t, 6) {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		nd := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		c.Addrs = append(c.Addrs, addr)
		c.start(addr, nd)
	}
	for _, a := range c.Addrs {
		c.waitPing(a)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitOK()
	return c
}

func (c *Cluster) start(addr, dir string) {
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server",
		"--port", port, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--cluster-node-timeout", strconv.Itoa(int(nodeTimeout.Milliseconds())),
		"--cluster-replica-validity-factor", "0",
		"--dir", dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	// Pdeathsig: a test binary killed by -timeout runs no cleanup; the
	// servers die with it instead of lingering.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting redis-server on %s: %v", addr, err)
	}
	c.procsMu.Lock()
	c.procs[addr] = cmd
	c.procsMu.Unlock()
}

func (c *Cluster) stopAll() {
	c.procsMu.Lock()
	defer c.procsMu.Unlock()
	for addr, cmd := range c.procs {
		cmd.Process.Kill()
		cmd.Wait()
		delete(c.procs, addr)
	}
}

func (c *Cluster) waitPing(addr string) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	c.eventually(func() error { return rdb.Ping(context.Background()).Err() }, "redis-server on "+addr+" answering")
}

// eventually retries fn for up to 30 s.
func (c *Cluster) eventually(fn func() error, what string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitOK waits until every running node reports cluster_state:ok with
// all 16384 slots covered, and every master's replica is online and
// caught up (so that a master killed afterwards loses nothing written
// before).
func (c *Cluster) WaitOK() {
	c.t.Helper()
	ctx := context.Background()
	c.eventually(func() error {
		for _, a := range c.Running() {
			rdb := redis.NewClient(&redis.Options{Addr: a})
			info, err := rdb.ClusterInfo(ctx).Result()
			rdb.Close()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				return fmt.Errorf("%s: not ok yet", a)
			}
		}
		return c.caughtUp()
	}, "cluster state ok")
}

// Healthy reports whether every running node reports cluster_state:ok.
func (c *Cluster) Healthy() bool {
	for _, a := range c.Running() {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		info, err := rdb.ClusterInfo(context.Background()).Result()
		rdb.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false
		}
	}
	return true
}

// caughtUp checks that each running master has a replica online that
// has acknowledged the master's replication offset as first seen (later
// pings move the master's on; what was written before is on the replica).
func (c *Cluster) caughtUp() error {
	for _, a := range c.Running() {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		defer rdb.Close()
		info, err := rdb.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "role:master") {
			continue
		}
		want := field(info, "master_repl_offset:")
		for {
			info, err = rdb.Info(context.Background(), "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "state=online") {
				if c.killedAny() && strings.Contains(info, "connected_slaves:0") {
					break
				}
				return fmt.Errorf("%s: no replica online", a)
			}
			if field(info, "offset=") >= want {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func (c *Cluster) killedAny() bool {
	c.procsMu.Lock()
	defer c.procsMu.Unlock()
	return c.killed
}

// field reads the integer after the first name in an INFO reply.
func field(info, name string) int64 {
	i := strings.Index(info, name)
	if i < 0 {
		return -1
	}
	rest := info[i+len(name):]
	j := strings.IndexAny(rest, ",\r\n")
	if j < 0 {
		j = len(rest)
	}
	n, _ := strconv.ParseInt(rest[:j], 10, 64)
	return n
}

// Running lists the nodes whose process runs.
func (c *Cluster) Running() []string {
	c.procsMu.Lock()
	defer c.procsMu.Unlock()
	var out []string
	for _, a := range c.Addrs {
		if _, ok := c.procs[a]; ok {
			out = append(out, a)
		}
	}
	return out
}

// Client returns a cluster client over every node, closed at cleanup.
func (c *Cluster) Client() *redis.ClusterClient {
	// Short dial retries: a killed master refuses connections until the
	// cluster notices and promotes its replica.
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs,
		DialTimeout: 300 * time.Millisecond, DialerRetries: 1, MaxRetries: 1})
	c.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Masters returns the address of each master among the running nodes, as
// a node that is up sees the cluster.
func (c *Cluster) Masters() []string {
	c.t.Helper()
	var out []string
	c.eventually(func() error {
		out = out[:0]
		run := c.Running()
		rdb := redis.NewClient(&redis.Options{Addr: run[0]})
		defer rdb.Close()
		nodes, err := rdb.ClusterNodes(context.Background()).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			out = append(out, strings.SplitN(f[1], "@", 2)[0])
		}
		if len(out) != 3 {
			return fmt.Errorf("%d masters", len(out))
		}
		return nil
	}, "listing masters")
	return out
}

// MasterOf returns the master serving key.
func (c *Cluster) MasterOf(key string) string {
	c.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.Running()[0]})
	defer rdb.Close()
	ctx := context.Background()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		c.t.Fatal(err)
	}
	var addr string
	c.eventually(func() error {
		slots, err := rdb.ClusterSlots(ctx).Result()
		if err != nil {
			return err
		}
		for _, s := range slots {
			if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
				addr = s.Nodes[0].Addr
				return nil
			}
		}
		return fmt.Errorf("slot %d not served", slot)
	}, "finding the master of "+key)
	return addr
}

// Kill SIGKILLs the node at addr (a master: its replica takes over after
// the node timeout). It stays down.
func (c *Cluster) Kill(addr string) {
	c.procsMu.Lock()
	cmd := c.procs[addr]
	delete(c.procs, addr)
	c.killed = true
	c.procsMu.Unlock()
	if cmd == nil {
		c.t.Fatalf("no running node %s", addr)
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// Stat is one command's figures from INFO commandstats.
type Stat struct {
	Calls int64
	Usec  int64 // CPU time Redis spent in it
}

// CommandStats returns, per running master, INFO commandstats by command
// name (eval, evalsha, xrange, ...): for measuring how evenly the load
// spreads over shards and what each command costs Redis.
func (c *Cluster) CommandStats() map[string]map[string]Stat {
	c.t.Helper()
	out := map[string]map[string]Stat{}
	for _, a := range c.Masters() {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		info, err := rdb.Info(context.Background(), "commandstats").Result()
		rdb.Close()
		if err != nil {
			c.t.Fatal(err)
		}
		out[a] = parseStats(info)
	}
	return out
}

// parseStats reads the calls= and usec= fields of INFO commandstats.
func parseStats(info string) map[string]Stat {
	out := map[string]Stat{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st Stat
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				st.Calls, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				st.Usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out
}

// ResetStats clears INFO commandstats on every running master.
func (c *Cluster) ResetStats() {
	for _, a := range c.Masters() {
		rdb := redis.NewClient(&redis.Options{Addr: a})
		rdb.ConfigResetStat(context.Background())
		rdb.Close()
	}
}

// freePorts picks n ports whose cluster bus twins (port+10000) are free
// too, from a random spot of the unprivileged range.
func freePorts(t testing.TB, n int) []int {
	var out []int
	used := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(30000)
		if used[p] || used[p+10000] || !free(p) || !free(p+10000) {
			continue
		}
		used[p], used[p+10000] = true, true
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatal("no free ports for a Redis Cluster")
	}
	return out
}

func free(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
