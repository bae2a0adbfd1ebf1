//go:build !linux

package bench

// threadCPU reports that the thread's CPU time cannot be read here.
func threadCPU() (int64, bool) { return 0, false }
