package main

// What the machine says about regbridge and itself: CPU time and memory of
// a process from /proc/<pid>/stat and /status, the process owning a
// listening port from /proc/net and /proc/*/fd, the load average, and the
// kernel's UDP drop counters. Linux only; elsewhere the figures are left
// out of the report.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go runs on (sysconf(_SC_CLK_TCK) needs cgo).
const clockTicks = 100

// procSample is a process's resource use at one instant.
type procSample struct {
	CPU     float64 `json:"cpu_seconds"` // user + system since start
	RSS     uint64  `json:"rss_bytes"`
	HWM     uint64  `json:"rss_peak_bytes"`
	Threads int     `json:"threads"`
}

// readProc reads pid's CPU time and memory.
func readProc(pid int) (procSample, error) {
	var p procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// The command name may hold spaces and parentheses: fields count from
	// the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return p, errors.New("malformed /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return p, errors.New("malformed /proc stat")
	}
	p.CPU = float64(ut+st) / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "VmRSS":
			p.RSS = n << 10
		case "VmHWM":
			p.HWM = n << 10
		case "Threads":
			p.Threads = int(n)
		}
	}
	return p, nil
}

// selfCPU is regload's own user + system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// hostCPU is the host's CPU time in seconds since boot, all cores
// together: busy (neither idle nor waiting for I/O) and in all.
type hostCPU struct{ busy, total float64 }

func readHostCPU() hostCPU {
	var h hostCPU
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return h
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return h
	}
	for i, v := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		h.total += float64(n) / clockTicks
		if i != 3 && i != 4 { // idle, iowait
			h.busy += float64(n) / clockTicks
		}
	}
	return h
}

// udpCounters are the kernel's UDP totals (all sockets of the host).
type udpCounters struct {
	InErrors     uint64 `json:"in_errors"`
	RcvbufErrors uint64 `json:"rcvbuf_errors"`
	SndbufErrors uint64 `json:"sndbuf_errors"`
}

func readUDPCounters() udpCounters {
	var c udpCounters
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return c
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, v := range f {
			if i >= len(names) {
				break
			}
			n, _ := strconv.ParseUint(v, 10, 64)
			switch names[i] {
			case "InErrors":
				c.InErrors = n
			case "RcvbufErrors":
				c.RcvbufErrors = n
			case "SndbufErrors":
				c.SndbufErrors = n
			}
		}
	}
	return c
}

func (c udpCounters) since(o udpCounters) udpCounters {
	return udpCounters{c.InErrors - o.InErrors, c.RcvbufErrors - o.RcvbufErrors, c.SndbufErrors - o.SndbufErrors}
}

// findPID returns the process with a socket bound to port: a UDP socket, or
// a listening TCP one.
func findPID(network string, port uint16) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/" + network, "/proc/net/" + network + "6"} {
		if err := socketInodes(f, network, port, inodes); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no %s socket on port %d", network, port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if inodes[link[len("socket:["):len(link)-1]] {
			pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
			if err == nil && pid != os.Getpid() {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process found for %s port %d (another user's?)", network, port)
}

// socketInodes adds the inodes of sockets on port listed in a /proc/net
// table.
func socketInodes(path, network string, port uint16, into map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	want := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || !strings.HasSuffix(fields[1], want) {
			continue
		}
		// TCP: only listeners (state 0A); UDP: unconnected sockets (07).
		if (network == "tcp" && fields[3] != "0A") || (network == "udp" && fields[3] != "07") {
			continue
		}
		into[fields[9]] = true
	}
	return sc.Err()
}
