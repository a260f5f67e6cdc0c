package dbfallback

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// threadCPU returns the CPU time the calling OS thread has used. The
// benchmarks lock their goroutine to a thread and report CPU time per op
// next to wall time: on a machine shared with other jobs, wall time counts
// the time the benchmark waited for a core, CPU time does not.
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	return time.Duration(ts.Nano())
}

// lockThread pins the benchmark to its thread for threadCPU; the returned
// function unpins it.
func lockThread() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}
