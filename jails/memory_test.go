package jails

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// BenchmarkTrackedAddressMemory reports the heap bytes per address a jail's window holds
// while it tracks 1M distinct addresses with one failure each.
func BenchmarkTrackedAddressMemory(b *testing.B) {
	const n = 1_000_000
	var perAddr float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := NewWindow(5, time.Hour)
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			w.Add(a, t0, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perAddr = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(w)
	}
	b.ReportMetric(perAddr, "bytes/addr")
}
