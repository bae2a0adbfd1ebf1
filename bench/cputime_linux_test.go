//go:build linux

package bench

import "syscall"

// threadCPU returns the CPU time the calling thread has used, in ns
// (RUSAGE_THREAD is Linux's), and whether it could be read.
func threadCPU() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil { // 1: RUSAGE_THREAD
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}
