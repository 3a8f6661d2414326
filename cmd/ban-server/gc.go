package main

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcHeadroom is the least the heap may grow between collections; above four times it,
// the heap may grow by a quarter of what is live.
const gcHeadroom = 16 << 20

// gcPercent returns the collector's growth target for a live heap of live bytes: Go's
// 100% while the heap is small, down to 25% as it grows. ban-server's heap is mostly
// its state (failure windows, bans), long-lived and nearly free of pointers, so a large
// one costs little to collect often, and 25% keeps the resident size near the state's:
// about 170 bytes per tracked address with a million tracked, 232 at 100%
// (BenchmarkServerMemory in bench/). A small heap stays at 100%: at 25% it would be
// collected every megabyte, and a burst of bans would spend a quarter of its time so.
func gcPercent(live uint64) int {
	if live == 0 {
		return 100
	}
	return int(min(100, max(25, 100*gcHeadroom/live)))
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

// tuneGC sets the collector's target from the live heap, every interval, for the life of
// the process, and gives free heap back to the system past releaseAbove. GOGC in the
// environment, when set, is left to rule instead.
func tuneGC(every time.Duration) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	last := 100
	var released time.Time
	followUps := 0
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := gcPercent(sample[0].Value.Uint64()); p != last {
				debug.SetGCPercent(p)
				last = p
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
