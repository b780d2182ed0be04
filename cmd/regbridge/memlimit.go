package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitShare is the part of the container's memory limit given to
// Go's heap goal: the rest covers stacks, socket buffers and what the
// runtime has not yet returned to the kernel.
const memoryLimitShare = 0.9

// applyMemoryLimit sets Go's soft memory limit (runtime/debug) to 90% of
// the container's memory limit when GOMEMLIMIT is not set, so that the
// garbage collector works harder as the process nears the limit instead
// of the kernel's OOM killer ending it. With GOGC's default the heap may
// otherwise grow to twice its live size between collections. Nothing
// changes without a cgroup limit or when GOMEMLIMIT is set.
func applyMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cgroupMemoryLimit("/sys/fs/cgroup")
	if limit <= 0 {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("Go memory limit set from the container's", "container_bytes", limit, "gomemlimit_bytes", soft)
}

// cgroupMemoryLimit reads the memory limit of the cgroup the process runs
// in, from a cgroup v2 (memory.max) or v1 (memory/memory.limit_in_bytes)
// mount at root; 0 when there is none or it is unlimited.
func cgroupMemoryLimit(root string) int64 {
	for _, p := range []string{"memory.max", filepath.Join("memory", "memory.limit_in_bytes")} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0 // v1 writes a huge page-aligned number for "unlimited"
		}
		return n
	}
	return 0
}
