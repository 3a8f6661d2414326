package farm

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// countSettings are how a jail counts across the farm: what its counting stream keeps.
type countSettings struct {
	MaxRetry int           `json:"maxretry"`
	FindTime time.Duration `json:"findtime"`
}

func (c countSettings) String() string {
	return fmt.Sprintf("maxretry %d and findtime %s", c.MaxRetry, c.FindTime)
}

func settingsOf(j Jail) countSettings {
	return countSettings{MaxRetry: j.MaxRetry, FindTime: j.FindTime}
}

// streamSettings reads what a counting stream counts with, from its metadata.
func streamSettings(cfg jetstream.StreamConfig) (countSettings, bool) {
	n, err := strconv.Atoi(cfg.Metadata[metaMaxRetry])
	d, derr := time.ParseDuration(cfg.Metadata[metaFindTime])
	return countSettings{MaxRetry: n, FindTime: d}, err == nil && derr == nil
}

// alignSettings makes the farm count each jail as its hosts say, once they agree: a
// jail's counting stream was made with the settings of the host that made it first, and
// a change every host makes (a reload, or a restart of all) is written to it. While
// the hosts disagree, the stream's settings count, and Status and the log say so, naming
// who says what. A host takes part once it has read every node's entry; with the farm's
// list of nodes, every node of it must have said the same. fresh are the streams that
// answered checkHealth just now, by name, their info new: another host may have written
// them since this host last looked.
func (f *Farm) alignSettings(ctx context.Context, h *handles, fresh map[string]jetstream.Stream) {
	f.mu.Lock()
	ready := f.nodesRead
	var js []Jail
	for _, j := range f.jails {
		if countsAcross(j) {
			js = append(js, j)
		}
	}
	f.mu.Unlock()
	if !ready {
		return
	}
	slices.SortFunc(js, func(a, b Jail) int { return strings.Compare(a.Name, b.Name) })
	for _, j := range js {
		s, ok := fresh[f.cfg.Name+"_fail_"+j.Name]
		if !ok || s.CachedInfo().Config.Metadata[metaFarm] != f.cfg.Name {
			continue // not made yet, no answer (the next round), or not the farm's
		}
		h.mu.Lock()
		h.streams[j.Name] = s // countedAt reads the farm's settings from it
		h.mu.Unlock()
		farmSays, ok := streamSettings(s.CachedInfo().Config)
		mine := settingsOf(j)
		if ok && farmSays == mine {
			f.setDrift(j.Name, "")
			continue
		}
		others, agree := f.othersSay(j.Name, mine)
		if !agree {
			f.setDrift(j.Name, fmt.Sprintf("jail %s: the hosts count it differently (%s); the farm counts with %s, as its stream says, until they agree",
				j.Name, describe(f.cfg.Node, mine, others), farmSays))
			continue
		}
		if err := f.updateStream(ctx, h, s, j); err != nil {
			f.failf("writing jail "+j.Name+"'s settings to the farm", err)
			continue
		}
		f.setDrift(j.Name, "")
		f.logger.Info("jail now counts across the farm with "+mine.String()+", as every host says", "jail", j.Name, "was", farmSays.String())
	}
}

// othersSay returns what each other node says of jail (nodes that do not count it
// across the farm say nothing), and whether every one says mine. With the farm's list of
// nodes, a node of it not heard from disagrees.
func (f *Farm) othersSay(jail string, mine countSettings) (map[string]countSettings, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	says := map[string]countSettings{}
	agree := true
	for name, n := range f.others {
		if c, ok := n.jails[jail]; ok {
			says[name] = c
			agree = agree && c == mine
		}
	}
	for name := range f.keys {
		if _, heard := f.others[name]; !heard && name != f.cfg.Node {
			agree = false
		}
	}
	return says, agree
}

// describe names who says what: "this host (mta1): maxretry 3 and findtime 1h0m0s;
// mta2, mbox1: maxretry 5 and findtime 10m0s".
func describe(node string, mine countSettings, others map[string]countSettings) string {
	byValue := map[countSettings][]string{mine: {"this host (" + node + ")"}}
	for _, name := range slices.Sorted(maps.Keys(others)) {
		byValue[others[name]] = append(byValue[others[name]], name)
	}
	var parts []string
	for c, names := range byValue {
		parts = append(parts, strings.Join(names, ", ")+": "+c.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// setDrift sets the warning for jail ("" clears it), logging a new one.
func (f *Farm) setDrift(jail, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drift[jail] == msg {
		return
	}
	if msg == "" {
		delete(f.drift, jail)
		return
	}
	f.drift[jail] = msg
	f.logger.Warn("farm settings differ: " + msg)
}

// updateStream writes j's settings to its counting stream s.
func (f *Farm) updateStream(ctx context.Context, h *handles, s jetstream.Stream, j Jail) error {
	cfg := s.CachedInfo().Config
	cfg.MaxAge = j.FindTime
	cfg.MaxMsgsPerSubject = int64(j.MaxRetry - 1)
	cfg.Duplicates = min(j.FindTime, 10*time.Minute)
	cfg.Metadata = maps.Clone(cfg.Metadata)
	cfg.Metadata[metaMaxRetry], cfg.Metadata[metaFindTime] = strconv.Itoa(j.MaxRetry), j.FindTime.String()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	updated, err := h.js.UpdateStream(cctx, cfg)
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	h.mu.Lock()
	h.streams[j.Name] = updated
	h.mu.Unlock()
	return nil
}

// countedAt returns the failures the farm counts jail's bans at: its stream's maxretry,
// or (not known yet) the jail's own.
func (f *Farm) countedAt(h *handles, j Jail) int {
	h.mu.Lock()
	s := h.streams[j.Name]
	h.mu.Unlock()
	if s != nil {
		if c, ok := streamSettings(s.CachedInfo().Config); ok {
			return c.MaxRetry
		}
	}
	return j.MaxRetry
}
