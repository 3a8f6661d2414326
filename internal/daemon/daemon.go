// Package daemon wires ban-server together: it builds filters, jails, actions and file
// readers from a configuration, runs them, answers the control socket, and applies a new
// configuration on reload without losing the bans of the jails that survive it.
//
// One goroutine that Run starts owns every change of configuration after the first;
// SIGHUP and ban-client reload both ask it and wait for its answer.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/store"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/watcher"
)

// Options configure a Daemon.
type Options struct {
	// ConfigPath is the main configuration file, reread on reload.
	ConfigPath string
	// DryRun replaces every action with the log action.
	DryRun bool
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Level, if set, is changed to the configuration's server.loglevel on start and reload.
	Level *slog.LevelVar
	// Clock decides ban expiry and stands in for lines without a timestamp; nil means
	// the system clock.
	Clock jails.Clock
	// HostPrefixes returns the host's own addresses, which are never banned; nil means
	// jails.HostPrefixes.
	HostPrefixes func() ([]netip.Prefix, error)
	// Version is reported by status.
	Version string
}

// Daemon is a running ban-server.
type Daemon struct {
	opts    Options
	logger  *slog.Logger
	manager *jails.Manager
	banner  *banner
	reloads chan chan error
	ready   chan struct{}

	mu      sync.RWMutex // guards the fields below, changed only by Run and the goroutine owning changes
	cfg     *config.Config
	jails   map[string]*jailRuntime
	actions map[string]*actionRuntime
	readers map[string]*reader // by path

	controlLn   net.Listener
	store       *store.Store                // used by one goroutine at a time: Run's, then the one owning changes
	positions   map[string]watcher.Position // as last saved, by path; Run's goroutine only
	metricsAddr string
}

type jailRuntime struct {
	cfg     config.Jail
	ignore  []netip.Prefix
	trusted []netip.Prefix
	filter  config.Filter
	jail    *jails.Jail

	// skew is the steady offset of the jail's line times from the clock, once found.
	skew atomic.Pointer[skewReport]
	// caughtUp says the jail's files were all read to their end at the last look.
	caughtUp atomic.Bool
}

// skewReport is a steady clock offset found in a jail's lines, and what fixes it.
type skewReport struct {
	jails.Skew
	Advice string
}

type actionRuntime struct {
	cfg    config.Action
	action actions.Action
}

// reader follows one file and feeds its lines to every jail that watches it.
type reader struct {
	follower *watcher.Follower
	jails    atomic.Pointer[[]*jails.Jail]
	cancel   context.CancelFunc // nil until it reads
	done     chan struct{}
}

// stop ends r's reading, or closes its file if it never began.
func (r *reader) stop() {
	if r.cancel == nil {
		r.follower.Close()
		return
	}
	r.cancel()
	<-r.done
}

// New loads the configuration and returns a daemon ready to Run. A configuration error
// is returned as it is, with every problem found.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = jails.SystemClock{}
	}
	if opts.HostPrefixes == nil {
		opts.HostPrefixes = jails.HostPrefixes
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	m := jails.NewManager(opts.Clock, opts.Logger)
	return &Daemon{
		opts:    opts,
		logger:  opts.Logger,
		manager: m,
		banner:  newBanner(m),
		reloads: make(chan chan error),
		ready:   make(chan struct{}),
		cfg:     cfg,
		jails:   map[string]*jailRuntime{},
		actions: map[string]*actionRuntime{},
		readers: map[string]*reader{},
	}, nil
}

// Run starts every part and blocks until ctx is done, then stops them: file readers
// first, then the actions' Stop. It returns early if a part cannot start, or fails;
// then the actions are not stopped, and what they put in the kernel stays.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.RLock()
	socket := d.cfg.Server.Socket
	d.mu.RUnlock()
	ln, err := control.Listen(socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	d.controlLn = ln
	if err := d.openStore(ctx); err != nil {
		return err
	}
	defer func() { d.store.Close() }() // the store in use at the end: it may have been made anew
	var metricsLn net.Listener
	if addr := d.cfg.Server.Metrics; addr != "" {
		if metricsLn, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer metricsLn.Close()
	}
	if metricsLn != nil {
		d.metricsAddr = metricsLn.Addr().String()
	}
	m := newMetrics(d)
	d.manager.SetObserver(m.observe)
	// The banner outlives the readers: shutdown stops it after them.
	go d.banner.run(context.WithoutCancel(ctx))

	g, gctx := errgroup.WithContext(ctx)
	// Recorded bans are in force before any line is read: a line read again after a
	// crash then finds its address banned already, and bans it neither again nor longer.
	if err := d.apply(gctx, d.cfg, false); err != nil {
		d.shutdown(false)
		return err
	}
	if err := d.restore(gctx); err != nil {
		d.shutdown(false)
		return err
	}
	d.startReaders(gctx)
	g.Go(func() error { return d.manager.Run(gctx) })
	g.Go(func() error { return control.Serve(gctx, ln, d, d.logger) })
	g.Go(func() error { d.ownChanges(gctx); return nil })
	if metricsLn != nil {
		g.Go(func() error { return d.serveMetrics(gctx, metricsLn, m) })
	}
	d.logger.Info("started", "config", d.opts.ConfigPath, "socket", socket, "jails", len(d.jails), "dry_run", d.opts.DryRun)
	close(d.ready)
	err = g.Wait()
	// Only an orderly stop lifts what the actions put in the kernel. A part that failed
	// leaves it, as a crash would, for the next start to take over.
	d.shutdown(err == nil)
	if err != nil {
		d.logger.Error("stopped on an error; bans stay in the kernel for the next start", "err", err)
		return err
	}
	d.logger.Info("stopped")
	return nil
}

// MetricsAddr returns the address metrics are served on, once Ready; "" if none.
func (d *Daemon) MetricsAddr() string { return d.metricsAddr }

// Ready is closed once Run has started every part: the control socket answers, and every
// log file is followed from the point it had reached when the reader was made.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// openStore opens the database and reads the saved file positions.
func (d *Daemon) openStore(ctx context.Context) error {
	s, err := store.Open(ctx, d.cfg.Server.Database)
	if err != nil {
		return err
	}
	if sv := s.Salvaged(); sv != nil {
		d.logger.Error("DATABASE DAMAGED: moved aside, and what could be read of it salvaged into a new one; protecting with the rest",
			"database", d.cfg.Server.Database, "damage", sv.Damage, "moved_to", sv.MovedTo,
			"bans_salvaged", sv.Bans, "positions_salvaged", sv.Positions, "history_salvaged", sv.History)
	}
	positions, err := s.Positions(ctx)
	if err != nil {
		s.Close()
		return err
	}
	d.store, d.positions = s, positions
	d.manager.SetLedger(s)
	return nil
}

// restore applies the bans recorded by the last run, each with the time it has left.
func (d *Daemon) restore(ctx context.Context) error {
	start := time.Now()
	records, err := d.store.Bans(ctx)
	if err != nil {
		return err
	}
	restored, expired := d.manager.Restore(ctx, records)
	if len(records) > 0 {
		d.logger.Info("bans restored", "restored", restored, "expired_while_stopped", expired, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// positionSaveInterval is how often file positions are saved while running; they are
// saved at stop too.
const positionSaveInterval = time.Second

// storeCheckInterval is how often the database is checked for being deleted, replaced or
// damaged while in use.
const storeCheckInterval = 2 * time.Second

// skewInterval is how often each jail's line times are compared with the clock.
const skewInterval = 10 * time.Second

// judgeSkew looks, for each jail whose files were read to their end at the last look and
// still are, whether its recent failures' line times are steadily off the clock, and
// reports it once: a log written in another time zone, or by a host whose clock is
// wrong, silently ages (or rejuvenates) every failure. A jail catching up on a backlog is
// not judged: old lines read now are old, not skewed.
func (d *Daemon) judgeSkew() {
	now := d.opts.Clock.Now()
	d.mu.RLock()
	defer d.mu.RUnlock()
	for name, jr := range d.jails {
		caughtUp := true
		for _, p := range jr.cfg.LogPath {
			if r, ok := d.readers[p]; !ok || r.follower.Stats().Behind > 0 {
				caughtUp = false
			}
		}
		wasCaughtUp := jr.caughtUp.Swap(caughtUp)
		sk, steady := jr.jail.Skew() // forgets what it judged, either way
		if !steady || !caughtUp || !wasCaughtUp || jr.skew.Load() != nil {
			continue
		}
		loc, _ := config.ParseTimeZone(jr.cfg.TimeZone)
		rep := &skewReport{Skew: sk, Advice: sk.Advice(name, loc, now)}
		jr.skew.Store(rep)
		d.logger.Warn("clock skew: "+rep.Advice, "jail", name, "offset", sk.Offset.Round(time.Second))
	}
}

// savePositions records the positions of the given readers that moved since last saved,
// once the bans found in the lines before them are recorded.
func (d *Daemon) savePositions(ctx context.Context, readers []*reader) {
	moved := map[string]watcher.Position{}
	for _, r := range readers {
		path, p := r.follower.Path(), r.follower.Position()
		if p != d.positions[path] {
			moved[path] = p
		}
	}
	if len(moved) == 0 {
		return
	}
	d.banner.flush(ctx)
	// A ban whose record failed is only in memory: a crash would lose it, and the lines
	// that made it must then be read again. So the positions wait until it is recorded.
	if d.manager.Degraded().Unrecorded > 0 {
		return
	}
	if err := d.store.SavePositions(ctx, moved); err != nil {
		d.logger.Error("saving file positions", "err", err)
		return
	}
	maps.Copy(d.positions, moved)
}

// remakeStore replaces a database lost while in use (deleted, replaced, damaged) with a
// new one holding what the daemon has in memory: every ban in force, with its count, and
// the file positions last saved. The ban history of addresses not banned now is lost.
// Whatever is at the path is moved aside first, with its write-ahead log: a new database
// must not take up the old one's log.
func (d *Daemon) remakeStore(ctx context.Context, cause error) {
	path := d.cfg.Server.Database
	d.logger.Error("DATABASE LOST while in use; making it anew from the bans in force", "database", path, "cause", cause)
	moved, err := store.MoveAside(path)
	if err != nil {
		d.logger.Error("moving the lost database aside; trying again shortly", "database", path, "err", err)
		return
	}
	s, err := store.Open(ctx, path)
	if err != nil {
		d.logger.Error("making the database anew; trying again shortly", "database", path, "err", err)
		return
	}
	if err := d.manager.Resync(ctx, s); err != nil {
		d.logger.Error("recording the bans in force in the new database; retried", "database", path, "err", err)
	}
	if err := s.SavePositions(ctx, d.positions); err != nil {
		d.logger.Error("saving file positions in the new database", "database", path, "err", err)
	}
	old := d.store
	d.store = s
	old.Close()
	n := len(d.manager.Bans(""))
	d.logger.Warn("database made anew", "database", path, "bans_recorded", n, "old_files_moved_to", moved)
}

// ownChanges is the one goroutine that changes the configuration, the saver of file
// positions, the keeper of the database, and the housekeeper that prunes aged-out
// failures.
func (d *Daemon) ownChanges(ctx context.Context) {
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	save := time.NewTicker(positionSaveInterval)
	defer save.Stop()
	check := time.NewTicker(storeCheckInterval)
	defer check.Stop()
	skew := time.NewTicker(skewInterval)
	defer skew.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-skew.C:
			d.judgeSkew()
		case <-check.C:
			if err := d.store.Check(ctx); errors.Is(err, store.ErrLost) {
				d.remakeStore(ctx, err)
			} else if err != nil {
				d.logger.Warn("checking the database", "err", err)
			}
		case answer := <-d.reloads:
			answer <- d.reload(ctx)
		case <-save.C:
			d.mu.RLock()
			readers := slices.Collect(maps.Values(d.readers))
			d.mu.RUnlock()
			d.savePositions(ctx, readers)
		case <-prune.C:
			now := d.opts.Clock.Now()
			d.mu.RLock()
			for _, j := range d.jails {
				j.jail.Prune(now)
			}
			d.mu.RUnlock()
		}
	}
}

// Reload asks Run's goroutine to reread the configuration, and waits for the outcome. On
// error nothing has changed.
func (d *Daemon) Reload(ctx context.Context) error {
	answer := make(chan error, 1)
	select {
	case d.reloads <- answer:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *Daemon) reload(ctx context.Context) error {
	cfg, err := config.Load(d.opts.ConfigPath)
	if err != nil {
		d.logger.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	for _, c := range []struct{ key, was, now string }{
		{"server.socket", d.cfg.Server.Socket, cfg.Server.Socket},
		{"server.database", d.cfg.Server.Database, cfg.Server.Database},
		{"server.metrics", d.cfg.Server.Metrics, cfg.Server.Metrics},
	} {
		if c.was != c.now {
			d.logger.Warn(c.key+" changed; it takes effect at the next start", "running", c.was, "configured", c.now)
		}
	}
	if err := d.apply(ctx, cfg, true); err != nil {
		d.logger.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	d.logger.Info("reloaded", "jails", len(cfg.Jails))
	return nil
}

// apply makes cfg the running configuration. Actions are started first; if one cannot
// start, the new ones are stopped again and nothing else changes. New files' readers
// start reading if read says so, else at startReaders.
func (d *Daemon) apply(ctx context.Context, cfg *config.Config, read bool) error {
	if d.opts.Level != nil {
		d.opts.Level.Set(cfg.Server.LogLevel)
	}
	newActions, started, err := d.buildActions(ctx, cfg)
	if err != nil {
		stopAll(ctx, started, d.logger)
		return err
	}
	newJails, err := d.buildJails(cfg)
	if err != nil {
		stopAll(ctx, started, d.logger)
		return err
	}

	// Files: one reader each, whatever the number of jails that watch it. A file's
	// start is the widest its jails ask for: beginning, else resume, else end.
	byPath := map[string][]*jails.Jail{}
	start := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(newJails)) {
		jr := newJails[name]
		for _, p := range jr.cfg.LogPath {
			byPath[p] = append(byPath[p], jr.jail)
			start[p] = widestStart(start[p], jr.cfg.Start)
		}
	}
	newReaders := map[string]*reader{}
	for path, js := range byPath {
		if _, ok := d.readers[path]; ok {
			continue
		}
		r, err := d.open(path, js, startOf(start[path]), cfg.Server.MaxLineBytes)
		if err != nil {
			for _, r := range newReaders {
				r.follower.Close()
			}
			stopAll(ctx, started, d.logger)
			return err
		}
		newReaders[path] = r
	}

	// Bans move to the new jails and actions.
	for name := range d.jails {
		if _, ok := newJails[name]; !ok {
			d.manager.RemoveJail(ctx, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(newJails)) {
		jr := newJails[name]
		named := make([]jails.NamedAction, len(jr.cfg.Actions))
		for i, a := range jr.cfg.Actions {
			named[i] = jails.NamedAction{Name: a, Action: newActions[a].action}
		}
		d.manager.SetJail(ctx, name, jails.BanPolicy{BanTime: jr.cfg.BanTime, Increment: jr.cfg.Increment}, named)
	}

	d.mu.Lock()
	oldActions := d.actions
	var gone []*reader
	for path, r := range d.readers {
		if _, ok := byPath[path]; !ok {
			r.stop()
			gone = append(gone, r)
			delete(d.readers, path)
		}
	}
	for path, r := range d.readers {
		js := byPath[path]
		r.jails.Store(&js)
	}
	for path, r := range newReaders {
		d.readers[path] = r
		if read {
			d.run(ctx, r)
		}
	}
	d.cfg, d.jails, d.actions = cfg, newJails, newActions
	d.mu.Unlock()
	// Where new readers start is saved at once: a crash before the first periodic save
	// then resumes there, not at the end.
	d.savePositions(ctx, slices.Concat(gone, slices.Collect(maps.Values(newReaders))))

	var retired []*actionRuntime
	for name, ar := range oldActions {
		if nr, ok := newActions[name]; !ok || nr.action != ar.action {
			retired = append(retired, ar)
		}
	}
	stopAll(ctx, retired, d.logger)
	return nil
}

// buildActions returns the actions of cfg: running ones whose configuration is
// unchanged, and new ones, started. started lists the new ones.
func (d *Daemon) buildActions(ctx context.Context, cfg *config.Config) (all map[string]*actionRuntime, started []*actionRuntime, err error) {
	all = map[string]*actionRuntime{}
	for _, name := range slices.Sorted(maps.Keys(cfg.Actions)) {
		ac := cfg.Actions[name]
		if old, ok := d.actions[name]; ok && old.cfg.Equal(ac) {
			all[name] = old
			continue
		}
		var a actions.Action
		if d.opts.DryRun {
			a = actions.NewLog(actions.LogOptions{}, d.logger.With("action", name, "dry_run", true))
		} else if a, err = actions.New(ac.Type, name, ac.Options, d.logger); err != nil {
			return nil, started, err
		}
		if err := a.Start(ctx); err != nil {
			// Not fatal: its calls fail, are counted, and are retried until it works.
			d.logger.Error("action did not start; its bans will be retried", "action", name, "err", err)
		}
		ar := &actionRuntime{cfg: ac, action: a}
		started = append(started, ar)
		all[name] = ar
	}
	return all, started, nil
}

// buildJails returns the jails of cfg, keeping the running Jail (and so its failure
// counts) of every jail whose configuration is unchanged.
func (d *Daemon) buildJails(cfg *config.Config) (map[string]*jailRuntime, error) {
	host, err := d.opts.HostPrefixes()
	if err != nil {
		return nil, fmt.Errorf("reading the host's own addresses: %w", err)
	}
	out := map[string]*jailRuntime{}
	for name, jc := range cfg.Jails {
		// Trusted proxies are stepped over in forwarded-for lists, and never banned.
		trusted := slices.Concat(cfg.Server.TrustedProxies, jc.TrustedProxies)
		ignore := slices.Concat(cfg.Server.IgnoreIP, jc.IgnoreIP, trusted, host)
		fc := cfg.Filters[jc.Filter]
		if old, ok := d.jails[name]; ok && old.cfg.Equal(jc) && slices.Equal(old.ignore, ignore) && slices.Equal(old.trusted, trusted) && old.filter.Definition.Equal(fc.Definition) {
			out[name] = old
			continue
		}
		f, err := fc.Compile(trusted)
		if err != nil {
			return nil, fmt.Errorf("jail %q: %w", name, err)
		}
		loc, err := config.ParseTimeZone(jc.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("jail %q: %w", name, err)
		}
		f.SetLocation(loc)
		out[name] = &jailRuntime{cfg: jc, ignore: ignore, trusted: trusted, filter: fc, jail: jails.New(name, f, jails.Settings{
			MaxRetry: jc.MaxRetry,
			FindTime: jc.FindTime,
			Ignore:   jails.NewIgnoreList(ignore...),
		})}
	}
	return out, nil
}

// widestStart returns where a file watched by jails that ask for starts a and b begins:
// the beginning if either asks for it, else resume, else the end.
func widestStart(a, b string) string {
	rank := map[string]int{"": 0, config.StartEnd: 1, config.StartResume: 2, config.StartBeginning: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// startOf maps a jail's start setting to the watcher's.
func startOf(s string) watcher.Start {
	switch s {
	case config.StartBeginning:
		return watcher.FromBeginning
	case config.StartResume:
		return watcher.Resume
	}
	return watcher.FromEnd
}

// open positions a reader on path where its start says. It is synchronous, so no line
// written after it returns is missed; reading begins with run.
func (d *Daemon) open(path string, js []*jails.Jail, start watcher.Start, maxLine int) (*reader, error) {
	fw, err := watcher.Open(path, watcher.Options{
		Start:       start,
		Resume:      d.positions[path],
		MaxLineSize: maxLine,
		Logger:      d.logger.With("file", path),
	})
	if err != nil {
		return nil, err
	}
	r := &reader{follower: fw, done: make(chan struct{})}
	r.jails.Store(&js)
	return r, nil
}

// startReaders starts every reader that is not reading yet.
func (d *Daemon) startReaders(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.readers {
		if r.cancel == nil {
			d.run(ctx, r)
		}
	}
}

// run starts reading r's file into its jails, until ctx is done or r is cancelled.
func (d *Daemon) run(ctx context.Context, r *reader) {
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	go func() {
		defer close(r.done)
		if err := r.follower.Run(rctx, func(b watcher.Batch) { d.lines(r, b) }); err != nil {
			d.logger.Error("file no longer followed", "file", r.follower.Path(), "err", err)
		}
	}()
}

// lines runs a batch through every jail that watches the file and hands what crossed
// maxretry to the banner. This is the hot path.
func (d *Daemon) lines(r *reader, batch watcher.Batch) {
	js := *r.jails.Load()
	now := d.opts.Clock.Now()
	var tickets []jails.Ticket // allocated only for a batch with a ban in it
	for _, j := range js {
		tickets = jailLines(j, batch, now, tickets)
	}
	if len(tickets) > 0 {
		d.banner.ban(tickets)
	}
}

// jailLines runs one jail over a batch: only the lines that may hold the text every
// match of the jail's filter holds are judged (watcher.Batch.Search).
func jailLines(j *jails.Jail, batch watcher.Batch, now time.Time, tickets []jails.Ticket) []jails.Ticket {
	batch.Search(j.Next, func(i int) {
		if t, ok := j.Line(batch.Lines[i].Text, now); ok {
			tickets = append(tickets, t)
		}
	})
	return tickets
}

// shutdown stops the readers and saves where they stand. An orderly one then stops
// every action, which lifts what they put in the kernel (unless keep_on_stop); after a
// failure the kernel keeps it, as after a crash.
func (d *Daemon) shutdown(orderly bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	readers := slices.Collect(maps.Values(d.readers))
	for _, r := range readers {
		r.stop()
	}
	clear(d.readers)
	d.savePositions(ctx, readers)
	d.banner.close()
	if orderly {
		stopAll(ctx, slices.Collect(maps.Values(d.actions)), d.logger)
	}
}

func stopAll(ctx context.Context, as []*actionRuntime, logger *slog.Logger) {
	for _, ar := range as {
		if err := ar.action.Stop(ctx); err != nil {
			logger.Error("stopping action", "action", ar.cfg.Name, "err", err)
		}
	}
}
