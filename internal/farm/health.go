package farm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/natsserver"
)

// StreamHealth is one of the farm's buckets or streams, as this host last asked the
// servers of it: whether it has a leader and how many replicas are current with it.
// Without a quorum of replicas, nothing can be written to it: no ban published, no
// failure counted across the farm.
type StreamHealth struct {
	Name string
	// Leader is the server leading it; "" if none answered, or it has none.
	Leader string
	// Replicas is how many it has; Current, how many of them (its leader among them)
	// are current with the leader.
	Replicas, Current int
	// Err says why the servers did not answer.
	Err string
	At  time.Time
}

// Quorum reports whether a majority of its replicas is current: it takes writes.
func (s StreamHealth) Quorum() bool { return s.Leader != "" && s.Current > s.Replicas/2 }

// healthEvery is how often the farm's buckets and streams are asked of.
const healthEvery = 5 * time.Second

// SetRoutes makes routes tell the state of this host's embedded NATS server's routes,
// for Status. Call it before Run.
func (f *Farm) SetRoutes(routes func() []natsserver.Route) { f.routes = routes }

// wrote notes that the farm took a write from this host now.
func (f *Farm) wrote() { f.lastWrite.Store(f.clock.Now().UnixNano()) }

// checkHealth asks, every healthEvery until ctx is done, after the farm's bucket and
// streams, keeps what it learnt for Status, and logs when one loses or regains its
// quorum; and writes the counting settings the hosts agree on (alignSettings).
func (f *Farm) checkHealth(ctx context.Context, h *handles, _ Target, _ Decide) {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		names := []string{"KV_" + f.cfg.Name + "_bans", "KV_" + f.cfg.Name + "_nodes"}
		f.mu.Lock()
		for _, j := range f.jails {
			if countsAcross(j) {
				names = append(names, f.cfg.Name+"_fail_"+j.Name)
			}
		}
		f.mu.Unlock()
		slices.Sort(names[2:])
		health := make([]StreamHealth, 0, len(names))
		fresh := map[string]jetstream.Stream{} // each stream that answered, its info new
		for _, name := range names {
			sh, st := f.streamHealth(ctx, h, name)
			health = append(health, sh)
			if st != nil {
				fresh[name] = st
			}
		}
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		before := f.health
		f.health = health
		f.mu.Unlock()
		for _, s := range health {
			i := slices.IndexFunc(before, func(b StreamHealth) bool { return b.Name == s.Name })
			switch was := i >= 0 && before[i].Quorum(); {
			case was && !s.Quorum():
				f.logger.Warn("the farm's "+s.Name+" lost its quorum: nothing is written to it until it is back; decisions wait in the outbox",
					"leader", s.Leader, "current", s.Current, "replicas", s.Replicas, "err", s.Err)
			case i >= 0 && !was && s.Quorum():
				f.logger.Info("the farm's "+s.Name+" has its quorum back", "leader", s.Leader)
			}
		}
		f.alignSettings(ctx, h, fresh)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// streamHealth asks the servers after the stream name, and returns what they said and
// the stream, its info as they said it (nil if they did not answer).
func (f *Farm) streamHealth(ctx context.Context, h *handles, name string) (StreamHealth, jetstream.Stream) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s := StreamHealth{Name: name, At: f.clock.Now()}
	st, err := h.js.Stream(cctx, name)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no server answered within 2s: no leader where this host is (cut off, or no quorum)")
		}
		s.Err = err.Error()
		return s, nil
	}
	info := st.CachedInfo()
	s.Replicas = max(info.Config.Replicas, 1)
	if c := info.Cluster; c != nil {
		s.Leader = c.Leader
		if c.Leader != "" {
			s.Current = 1
		}
		for _, p := range c.Replicas {
			if p.Current && !p.Offline {
				s.Current++
			}
		}
	} else {
		s.Leader, s.Current = "this server", 1 // a lone server, no cluster
	}
	return s, st
}

// countsAcross reports whether j counts its failures in a farm stream.
func countsAcross(j Jail) bool { return j.Mode == config.FarmCount && j.MaxRetry > 1 }
