package jails

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// refWindow is the plain model Window must agree with: every address's failure times
// in a slice, at most maxRetry of them, the oldest dropped first.
type refWindow struct {
	maxRetry int
	findTime time.Duration
	seen     map[netip.Addr][]int64
}

func (w *refWindow) add(addr netip.Addr, t, now time.Time) (int, bool) {
	if t.Before(now.Add(-w.findTime)) {
		return 0, false
	}
	ts := t.UnixNano()
	times := w.seen[addr]
	i, _ := slices.BinarySearch(times, ts+1)
	times = slices.Insert(times, i, ts)
	if len(times) > w.maxRetry {
		times = times[len(times)-w.maxRetry:]
	}
	first := 0
	for first < len(times) && times[len(times)-1]-times[first] > int64(w.findTime) {
		first++
	}
	if n := len(times) - first; n >= w.maxRetry {
		delete(w.seen, addr)
		return n, true
	}
	w.seen[addr] = times
	return len(times) - first, false
}

// TestWindowAgreesWithModel drives Window and the model with the same random failures,
// out of order, with forgets and prunes, and wants the same answer every time.
func TestWindowAgreesWithModel(t *testing.T) {
	for _, maxRetry := range []int{1, 2, 3, 5} {
		r := rand.New(rand.NewPCG(uint64(maxRetry), 7))
		const findTime = 10 * time.Minute
		w := NewWindow(maxRetry, findTime)
		ref := &refWindow{maxRetry: maxRetry, findTime: findTime, seen: map[netip.Addr][]int64{}}
		addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"),
			netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("198.51.100.7")}
		now := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
		for step := range 20000 {
			now = now.Add(time.Duration(r.IntN(30)) * time.Second)
			addr := addrs[r.IntN(len(addrs))]
			switch k := r.IntN(100); {
			case k < 2:
				w.Forget(addr)
				delete(ref.seen, addr)
			case k < 4:
				w.Prune(now)
				limit := now.Add(-findTime).UnixNano()
				for a, times := range ref.seen {
					if times[len(times)-1] < limit {
						delete(ref.seen, a)
					}
				}
			default:
				at := now.Add(-time.Duration(r.IntN(int(findTime/time.Second)+60)) * time.Second)
				gn, gr := w.Add(addr, at, now)
				wn, wr := ref.add(addr, at, now)
				if gn != wn || gr != wr {
					t.Fatalf("maxretry %d, step %d: Add(%v, %v) = %d, %v; model says %d, %v", maxRetry, step, addr, at, gn, gr, wn, wr)
				}
			}
			if w.Len() != len(ref.seen) {
				t.Fatalf("maxretry %d, step %d: %d addresses tracked, model %d", maxRetry, step, w.Len(), len(ref.seen))
			}
		}
	}
}

// FuzzWindow drives Window and the model with operations read from the fuzzer's bytes:
// failures at any time around now (future ones too), forgets and prunes, at any
// maxretry; they must agree every time.
// go test -fuzz FuzzWindow ./jails
func FuzzWindow(f *testing.F) {
	f.Add(uint8(3), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add(uint8(1), []byte{0, 0, 0, 0})
	f.Add(uint8(5), []byte{200, 1, 200, 1, 200, 1, 200, 1, 255, 255})
	f.Fuzz(func(t *testing.T, retry uint8, ops []byte) {
		maxRetry := int(retry)%8 + 1
		const findTime = 10 * time.Minute
		w := NewWindow(maxRetry, findTime)
		ref := &refWindow{maxRetry: maxRetry, findTime: findTime, seen: map[netip.Addr][]int64{}}
		addrs := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("::ffff:192.0.2.9")}
		now := time.Date(2026, 3, 5, 16, 0, 0, 0, time.UTC)
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], ops[i+1]
			addr := addrs[int(op)%len(addrs)]
			now = now.Add(time.Duration(op>>4) * time.Second)
			switch {
			case op%16 == 14:
				w.Forget(addr)
				delete(ref.seen, addr)
			case op%16 == 15:
				w.Prune(now)
				limit := now.Add(-findTime).UnixNano()
				for a, times := range ref.seen {
					if times[len(times)-1] < limit {
						delete(ref.seen, a)
					}
				}
			default:
				at := now.Add(time.Duration(int(arg)-200) * 5 * time.Second) // 17 minutes back to 5 ahead
				gn, gr := w.Add(addr, at, now)
				wn, wr := ref.add(addr, at, now)
				if gn != wn || gr != wr {
					t.Fatalf("Add(%v, %v) = %d, %v; model %d, %v", addr, at, gn, gr, wn, wr)
				}
			}
			if w.Len() != len(ref.seen) {
				t.Fatalf("%d addresses tracked, model %d", w.Len(), len(ref.seen))
			}
		}
	})
}

// TestWindowLetsABurstGo: once every address of a burst is banned or forgotten, the
// window holds no memory for them; a burst's chunks would otherwise stay for life.
func TestWindowLetsABurstGo(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	w := NewWindow(3, time.Hour)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }
	for i := range 5000 {
		w.Add(addr(i), now, now)
	}
	if len(w.chunks) < 5 {
		t.Fatalf("5,000 addresses in %d chunks", len(w.chunks))
	}
	for i := range 5000 {
		if i%2 == 0 {
			w.Forget(addr(i))
			continue
		}
		w.Add(addr(i), now, now)
		if _, reached := w.Add(addr(i), now, now); !reached {
			t.Fatalf("address %d: no ban at the 3rd failure", i)
		}
	}
	if w.Len() != 0 || len(w.chunks) != 0 || len(w.free) != 0 {
		t.Errorf("after the burst: %d addresses, %d chunks, %d free slots kept", w.Len(), len(w.chunks), len(w.free))
	}
	if n, _ := w.Add(addr(1), now, now); n != 1 {
		t.Errorf("a failure after the burst counts %d", n)
	}
}
