package jails

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// heapPer returns the heap bytes what fill builds and returns takes, per one of n.
func heapPer(n int, fill func() any) float64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	kept := fill()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(kept)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkTrackedAddressMemory reports the heap bytes per address a jail's window holds
// while it tracks 1M distinct addresses with one failure each.
func BenchmarkTrackedAddressMemory(b *testing.B) {
	const n = 1_000_000
	var perAddr float64
	for b.Loop() {
		perAddr = heapPer(n, func() any {
			w := NewWindow(5, time.Hour)
			w.SetBound(1 << 30)
			for i := range n {
				w.Add(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), t0, t0)
			}
			return w
		})
	}
	b.ReportMetric(perAddr, "bytes/addr")
}

// BenchmarkTrackedNetworkMemory reports the heap bytes per network a jail's subnet
// escalation holds while it tracks 250,000 /24s, with one failing address each and with
// four (one short of escalating, the most a network holds at addresses = 5).
func BenchmarkTrackedNetworkMemory(b *testing.B) {
	const n = 250_000
	for _, per := range []int{1, 4} {
		b.Run(fmt.Sprintf("%d-addresses", per), func(b *testing.B) {
			var perNet float64
			for b.Loop() {
				perNet = heapPer(n, func() any {
					w := newNetWindow(Subnet{IPv4: 24, IPv6: 64, Addresses: 5, FindTime: time.Hour}, 1<<30)
					for i := range n {
						for host := range per {
							w.add(netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), byte(host + 1)}), t0, t0)
						}
					}
					return w
				})
			}
			b.ReportMetric(perNet, "bytes/network")
		})
	}
}

// BenchmarkTrackedAccountMemory reports the heap bytes per account a jail keyed by user
// holds while it tracks 250,000 accounts ("user123456@example.com"), each with one
// failure from one address, and with four from four (one short of maxretry 5).
func BenchmarkTrackedAccountMemory(b *testing.B) {
	const n = 250_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("user%06d@example.com", i)
	}
	for _, per := range []int{1, 4} {
		b.Run(fmt.Sprintf("%d-failures", per), func(b *testing.B) {
			var perAccount float64
			for b.Loop() {
				perAccount = heapPer(n, func() any {
					w := newKeyWindow(5, time.Hour, 1<<30)
					for i, name := range names {
						for k := range per {
							w.add(name, netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), byte(k + 1)}), t0, t0)
						}
					}
					return w
				})
			}
			b.ReportMetric(perAccount, "bytes/account")
		})
	}
}

// BenchmarkTrackedDeviceMemory reports the heap bytes per device a rate jail keyed by
// device holds (Carbonio Mobile's 150 requests within 30 s) while it tracks 100,000
// devices with 16-character ids, each with one request, and with 149 (one short of
// the ban): a rate keeps the time of each request within findtime.
func BenchmarkTrackedDeviceMemory(b *testing.B) {
	const n = 100_000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("ApplF17XK%07d", i)
	}
	for _, per := range []int{1, 149} {
		b.Run(fmt.Sprintf("%d-requests", per), func(b *testing.B) {
			var perDevice float64
			for b.Loop() {
				perDevice = heapPer(n, func() any {
					w := newKeyWindow(150, 30*time.Second, 1<<30)
					for i, id := range ids {
						addr := netip.AddrFrom4([4]byte{byte(10 + i>>16), byte(i >> 8), byte(i), 1})
						for k := range per {
							at := t0.Add(time.Duration(k) * 100 * time.Millisecond)
							w.add(id, addr, at, at)
						}
					}
					return w
				})
			}
			b.ReportMetric(perDevice, "bytes/device")
		})
	}
}
