package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/control"
)

// probe is an action kind that records its lifecycle, to check the daemon starts and
// stops actions when it should.
type probe struct {
	name string
	log  *probeLog
}

type probeLog struct {
	mu     sync.Mutex
	events []string
}

func (l *probeLog) add(s string) { l.mu.Lock(); l.events = append(l.events, s); l.mu.Unlock() }
func (l *probeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, "\n")
}

type probeOptions struct {
	Tag string `toml:"tag"`
}

var probes = &probeLog{}

func init() {
	actions.Register(actions.Kind{
		Name:    "test-probe",
		Options: func() any { return &probeOptions{} },
		New: func(name string, opts any, _ *slog.Logger) (actions.Action, error) {
			return &probe{name: name + "/" + opts.(*probeOptions).Tag, log: probes}, nil
		},
	})
}

func (p *probe) Start(context.Context) error { p.log.add("start " + p.name); return nil }
func (p *probe) Stop(context.Context) error  { p.log.add("stop " + p.name); return nil }
func (p *probe) Ban(_ context.Context, b actions.Ban) error {
	p.log.add("ban " + p.name + " " + b.Addr.String())
	return nil
}
func (p *probe) Unban(_ context.Context, b actions.Ban) error {
	p.log.add("unban " + p.name + " " + b.Addr.String())
	return nil
}

func TestActionsStartedStoppedAndMovedOnReload(t *testing.T) {
	probes.events = nil
	cfg := func(tag string) string {
		return strings.Replace(baseConfig, `actions = ["log"]`, `actions = ["log", "probe"]`, 1) +
			"\n[actions.probe]\ntype = \"test-probe\"\ntag = \"" + tag + "\"\n"
	}
	h := start(t, cfg("v1"), Options{})
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 })

	h.writeConfig(cfg("v1")) // unchanged: the running action stays
	if err := h.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.writeConfig(cfg("v2")) // changed: a new one takes over the bans, the old one stops
	if err := h.d.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.shutdown()
	// Each action's calls come between its start and its stop, in order; the old one
	// gives up its ban before it stops. The two actions' workers run side by side.
	events := strings.Split(probes.String(), "\n")
	at := map[string]int{}
	for i, e := range events {
		at[e] = i
	}
	for _, order := range [][]string{
		{"start probe/v1", "ban probe/v1 203.0.113.5", "unban probe/v1 203.0.113.5", "stop probe/v1"},
		{"start probe/v1", "start probe/v2", "ban probe/v2 203.0.113.5", "stop probe/v2"},
		{"start probe/v2", "stop probe/v1"},
	} {
		for i, e := range order {
			if _, ok := at[e]; !ok {
				t.Errorf("no %q", e)
			} else if i > 0 && at[order[i-1]] > at[e] {
				t.Errorf("%q before %q", e, order[i-1])
			}
		}
	}
	if len(events) != 7 || t.Failed() {
		t.Errorf("lifecycle:\n%s", probes)
	}
}
