package main

import (
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/logban/logban/internal/exepages"
)

// The heap may grow between collections by its headroom: busyHeadroom while the
// process allocates fast (a burst of bans, a farm's catch-up), quietHeadroom otherwise,
// and never by less than a quarter of what is live. ban-server's heap is mostly its
// state (failure windows, bans), long-lived and nearly free of pointers, so collecting
// it often costs little; what a collection leaves room for stays resident. A quiet
// host gives the garbage little room: a farm node holding 10,000 bans has about 20 MB
// live (BenchmarkFarmBurst in bench/), and 16 MB of headroom would let 16 MB more of
// garbage stay resident between collections. A busy one gets room to work: at 4 MB a
// burst would be collected every few milliseconds.
const (
	busyHeadroom  = 16 << 20
	quietHeadroom = 4 << 20
	// busyAllocs is the allocation in one tuning interval that makes the process busy,
	// and busyFor how long it stays so after the last such interval.
	busyAllocs = 2 << 20
	busyFor    = 10 * time.Second
)

// gcPercent returns the collector's growth target for a live heap of live bytes, given
// the headroom it may grow by: Go's 100% while the heap is small, down to 25% as it
// grows.
func gcPercent(live, headroom uint64) int {
	if live == 0 {
		return 100
	}
	return int(min(100, max(25, 100*headroom/live)))
}

// releaseAbove is how much free heap the process keeps from the system; releaseEvery,
// how often at most it gives back the rest. After a burst (an attack's thousands of
// bans, a farm's catch-up) the heap it grew to would stay mapped, free, for minutes,
// and with an embedded NATS server the burst's heap is several times the bans'.
const (
	releaseAbove = 4 << 20
	releaseEvery = 10 * time.Second
	// releaseFollowUps are the releases that follow one, releaseEvery apart: the NATS
	// server's file blocks keep their 4 MB buffers cached 10 s after their last use, then
	// pool them, and a pooled buffer is freed only by the second collection after.
	releaseFollowUps = 5
)

// gcTuner holds what tuneGC carries from one interval to the next.
type gcTuner struct {
	percent   int
	allocs    uint64    // bytes allocated by the last interval's end
	busyUntil time.Time // the process counts as busy until then
	quiet     bool      // fellQuiet has said so since the process was last busy
}

// step sets the collector's target from the live heap and the allocation since the last
// step, at now, and returns the percent it set.
func (t *gcTuner) step(now time.Time, live, allocs uint64) int {
	if t.allocs != 0 && allocs-t.allocs >= busyAllocs {
		t.busyUntil = now.Add(busyFor)
	}
	t.allocs = allocs
	headroom := uint64(quietHeadroom)
	if now.Before(t.busyUntil) {
		headroom = busyHeadroom
	}
	if p := gcPercent(live, headroom); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	return t.percent
}

// fellQuiet reports, once for each time, that the process has fallen quiet at now since
// it was last busy.
func (t *gcTuner) fellQuiet(now time.Time) bool {
	if now.Before(t.busyUntil) {
		t.quiet = false
		return false
	}
	if t.quiet {
		return false
	}
	t.quiet = true
	return true
}

// tuneGC sets the collector's target every interval, for the life of the process, and
// gives free heap back to the system past releaseAbove. Start-up counts as busy; each
// time the process falls quiet, it also gives back its binary's pages (exepages): most
// of what start-up or a burst ran will not run again soon, and what does comes back a
// page at a time. GOGC in the environment, when set, is left to rule instead, and the
// binary's pages are left alone.
func tuneGC(every time.Duration) {
	sample := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	t := gcTuner{percent: 100}
	var released time.Time
	followUps := 0
	t.busyUntil = time.Now().Add(busyFor)
	pagesGiven := true // until it fails
	for {
		metrics.Read(sample)
		now := time.Now()
		if sample[0].Value.Kind() == metrics.KindUint64 && sample[2].Value.Kind() == metrics.KindUint64 {
			t.step(now, sample[0].Value.Uint64(), sample[2].Value.Uint64())
		}
		if t.fellQuiet(now) && pagesGiven {
			if _, err := exepages.Release(); err != nil {
				pagesGiven = false // a kernel before 5.4 has no MADV_PAGEOUT: the pages stay
			}
		}
		free := sample[1].Value.Kind() == metrics.KindUint64 && sample[1].Value.Uint64() > releaseAbove
		if (free || followUps > 0) && time.Since(released) >= releaseEvery {
			debug.FreeOSMemory()
			released = time.Now()
			if free {
				followUps = releaseFollowUps
			} else {
				followUps--
			}
		}
		time.Sleep(every)
	}
}
