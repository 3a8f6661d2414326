// Package daemon wires ban-server together: it builds filters, jails, actions and file
// readers from a configuration, runs them, joins the farm if there is one (and runs its
// embedded NATS server), answers the control socket, and applies a new configuration on
// reload without losing the bans of the jails that survive it.
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
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/filters"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/farm"
	"github.com/logban/logban/internal/metrics"
	"github.com/logban/logban/internal/natsserver"
	"github.com/logban/logban/internal/pipeline"
	"github.com/logban/logban/internal/policy"
	"github.com/logban/logban/internal/store"
	"github.com/logban/logban/internal/zimbra"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/journal"
	"github.com/logban/logban/watcher"
)

// Options configure a Daemon.
type Options struct {
	// ConfigPath is the main configuration file, reread on reload.
	ConfigPath string
	// DryRun replaces every action with the log action, keeps bans and file positions in
	// a temporary database removed at stop, and joins no farm: nothing outside the
	// process changes.
	DryRun bool
	// Logger receives the daemon's log; nil discards it.
	Logger *slog.Logger
	// Level, if set, is changed to the configuration's server.loglevel on start and reload.
	Level *slog.LevelVar
	// Clock decides ban expiry and stands in for lines without a timestamp; nil means
	// the system clock.
	Clock jails.Clock
	// HostPrefixes returns the host's own addresses, which are never banned; nil means
	// jails.HostPrefixesOf the daemon's network namespace, read again at each change
	// of its addresses and routes.
	HostPrefixes func() ([]netip.Prefix, error)
	// Resolve resolves the names of the servers [zimbra]'s directory lists; nil means
	// the host's resolver.
	Resolve zimbra.Resolver
	// Version is reported by status.
	Version string
	// ActionDrainTime is how long the actions have, at stop, to make the calls queued
	// for them before the rest is abandoned; 0 means DefaultActionDrainTime.
	ActionDrainTime time.Duration
}

// Daemon is a running ban-server.
type Daemon struct {
	opts    Options
	logger  *slog.Logger
	manager *jails.Manager
	bans    *pipeline.BanQueue // from Run on
	reloads chan chan error
	ready   chan struct{}

	mu      sync.RWMutex // guards the fields below, changed only by Run and the goroutine owning changes
	cfg     *config.Config
	jails   map[string]*jailRuntime
	actions map[string]*actionRuntime
	readers map[string]*pipeline.Reader // by path
	globbed map[string][]string         // each logpath's files, as last expanded, by logpath

	// collector serves the metrics; set in Run before the first apply.
	collector *metrics.Collector
	// farm is this host's membership of its farm; nil without [farm], or in a dry run.
	farm *farm.Farm
	// host is the host's own addresses and gateways, never banned, kept current.
	host *jails.HostSet
	// directory is what [zimbra]'s directory names never to ban, kept current;
	// directoryTrusted, its trusted proxies, which jails built since step over in
	// forwarded-for lists. directoryRead asks for a read now (a reload); redo asks the
	// goroutine owning changes to build the jails again (the trusted proxies changed).
	directory        *jails.HostSet
	directoryTrusted []netip.Prefix
	directoryRead    chan struct{}
	directorySaves   chan []byte // reads of the directory to keep, for the goroutine owning the database
	redo             chan struct{}
	// trust holds the logins that worked, which every jail trusting them shares.
	trust *jails.Trust
	// keyBans are the bans of accounts and devices, which no firewall holds.
	keyBans *jails.KeyBans
	// notices wait here for the notify worker, which hands them to the actions named.
	notices chan notice
	// policy is the Postfix policy service, if [policy] has one.
	policyMu sync.Mutex
	policy   *policyRuntime
	// policyState is what the last policy service counted, for the next: kept from a
	// stop to the start that follows (a reload), and in the database across restarts.
	policyState *policy.State
	// kernelLost asks keepKernelInStep for a round now: an action found what it made
	// in the kernel removed, and put it back empty.
	kernelLost chan struct{}

	controlLn   net.Listener
	dbPath      string                      // the database in use: the configured one, or a dry run's temporary one
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

	// paths are the files the jail's logpath names, as last expanded (config.ExpandLogPaths).
	paths atomic.Pointer[[]string]
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

// New loads the configuration and returns a daemon ready to Run. A configuration error
// is returned as it is, with every problem found.
func New(opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = jails.SystemClock{}
	}
	if opts.ActionDrainTime == 0 {
		opts.ActionDrainTime = DefaultActionDrainTime
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if opts.Resolve == nil {
		opts.Resolve = zimbra.SystemResolver
	}
	return &Daemon{host: &jails.HostSet{}, directory: &jails.HostSet{}, directoryRead: make(chan struct{}, 1), directorySaves: make(chan []byte, 1), redo: make(chan struct{}, 1),
		opts:       opts,
		logger:     opts.Logger,
		manager:    jails.NewManager(opts.Clock, opts.Logger),
		reloads:    make(chan chan error),
		ready:      make(chan struct{}),
		cfg:        cfg,
		jails:      map[string]*jailRuntime{},
		actions:    map[string]*actionRuntime{},
		readers:    map[string]*pipeline.Reader{},
		trust:      jails.NewTrust(),
		keyBans:    jails.NewKeyBans(),
		notices:    make(chan notice, noticeQueue),
		kernelLost: make(chan struct{}, 1),
	}, nil
}

// notice is a Notice for the actions a jail's notify list names.
type notice struct {
	actions.Notice
	to []string
}

// noticeQueue is how many notices wait for the notify worker before more are dropped.
const noticeQueue = 1024

// noticeTimeout bounds one action's handling of one notice.
const noticeTimeout = 30 * time.Second

// notifier returns the function a jail hands its notices to: it queues them for
// notifyWorker without waiting, and drops them, with a warning, when the queue is full.
func (d *Daemon) notifier(to []string) func(actions.Notice) {
	if len(to) == 0 {
		return nil
	}
	return func(n actions.Notice) {
		select {
		case d.notices <- notice{n, to}:
		default:
			d.logger.Warn("notice dropped: the notify queue is full", "jail", n.Jail, "kind", n.Kind, "addr", n.Addr)
		}
	}
}

// notifyWorker hands each queued notice to the actions it names, one at a time, until
// ctx is done. A failed notice is logged, not retried.
func (d *Daemon) notifyWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-d.notices:
			for _, name := range n.to {
				d.mu.RLock()
				ar, ok := d.actions[name]
				d.mu.RUnlock()
				if !ok {
					continue // removed by a reload meanwhile
				}
				nt, isNotifier := ar.action.(actions.Notifier)
				if !isNotifier {
					continue
				}
				nctx, cancel := context.WithTimeout(ctx, noticeTimeout)
				if err := nt.Notify(nctx, n.Notice); err != nil {
					d.logger.Error("notice not passed on", "action", name, "jail", n.Jail, "kind", n.Kind, "err", err)
				}
				cancel()
			}
		}
	}
}

// longestTrust is the longest trust_time of cfg's jails: how long a login that worked
// is kept.
func longestTrust(cfg *config.Config) time.Duration {
	var longest time.Duration
	for _, j := range cfg.Jails {
		longest = max(longest, j.TrustTime)
	}
	return longest
}

// Run starts every part and blocks until ctx is done, then stops them: file readers
// first, then the ban queue and the actions' queues, then the actions' Stop. It returns early if a part cannot start, or fails;
// then the actions are not stopped, and what they put in the kernel stays.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.RLock()
	socket, gid := d.cfg.Server.Socket, d.cfg.Server.SocketGID
	d.mu.RUnlock()
	ln, err := control.Listen(socket, gid)
	if err != nil {
		return err
	}
	defer ln.Close()
	d.controlLn = ln
	if d.opts.DryRun {
		dir, err := os.MkdirTemp("", "logban-dry-run-")
		if err != nil {
			return fmt.Errorf("dry run: %w", err)
		}
		defer os.RemoveAll(dir)
		d.dbPath = filepath.Join(dir, "logban.db")
		d.logger.Warn("DRY RUN: every action only logs; bans and file positions go to a temporary database, removed at stop, and the farm is not joined: nothing outside this process changes",
			"database_untouched", d.cfg.Server.Database)
	} else {
		d.dbPath = d.cfg.Server.Database
	}
	readHost, err := d.readHost(ctx)
	if err != nil {
		return err
	}
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
	m := metrics.New(d.snapshot)
	d.collector = m
	d.manager.SetObserver(m.Observe)
	if fc := d.cfg.Farm; fc != nil && d.opts.DryRun {
		d.logger.Warn("dry run: the farm is not joined; bans stay on this host", "farm", fc.Name)
	} else if fc != nil {
		var routes func() []natsserver.Route
		if fc.Embedded != nil {
			var counting, quotas []string
			for _, name := range slices.Sorted(maps.Keys(d.cfg.Jails)) {
				if d.cfg.Jails[name].Farm == config.FarmCount {
					counting = append(counting, name)
				}
			}
			if d.cfg.Policy != nil {
				for _, q := range d.cfg.Policy.Settings.Quotas {
					quotas = append(quotas, q.Name)
				}
			}
			var users []natsserver.User
			for _, name := range slices.Sorted(maps.Keys(fc.Nodes)) {
				pub, sub := farm.Permissions(fc.Name, name, counting, quotas)
				users = append(users, natsserver.User{Nkey: fc.Nodes[name], Publish: pub, Subscribe: sub})
			}
			srv, err := natsserver.Start(natsserver.Options{Name: fc.Node, Cluster: fc.Name, Listen: fc.Embedded.Listen,
				ClusterListen: fc.Embedded.ClusterListen, Routes: fc.Embedded.Routes, StoreDir: fc.Embedded.StoreDir, Logger: d.logger,
				Users: users, CertFile: fc.TLSCert, KeyFile: fc.TLSKey, CAFile: fc.TLSCA})
			if err != nil {
				return fmt.Errorf("farm.embedded: %w", err)
			}
			defer srv.Stop() // after the farm's client is gone
			routes = srv.Routes
		}
		if err := d.joinFarm(ctx, m); err != nil {
			return err
		}
		if routes != nil {
			d.farm.SetRoutes(routes)
		}
	}
	d.watchHost(ctx, readHost)
	dirState := d.readDirectory(ctx, directoryState{}, true) // before the jails: they trust its proxies
	// The ban queue outlives the readers: shutdown closes it after them.
	d.bans = pipeline.NewBanQueue(context.WithoutCancel(ctx), d.manager)

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
	d.store.LoadHistory() // once the restore has read the bans: not beside it
	d.loadPolicyState(gctx)
	if err := d.startPolicy(gctx, d.cfg.Policy); err != nil {
		d.shutdown(false)
		return err
	}
	defer func() {
		d.stopPolicy()
		d.savePolicyState()
	}()
	d.startReaders(gctx)
	jailCount := len(d.jails) // before the goroutine that owns changes starts
	g.Go(func() error { return d.manager.Run(gctx) })
	g.Go(func() error { return control.Serve(gctx, ln, d, d.logger) })
	g.Go(func() error { d.ownChanges(gctx); return nil })
	g.Go(func() error { d.notifyWorker(gctx); return nil })
	g.Go(func() error { d.keepKernelInStep(gctx); return nil })
	g.Go(func() error { d.followDirectory(gctx, dirState); return nil })
	if d.farm != nil {
		g.Go(func() error { return d.farm.Run(gctx, d.manager, d.farmDecided) })
	}
	if metricsLn != nil {
		g.Go(func() error { return m.Serve(gctx, metricsLn) })
	}
	d.logger.Info("started", "config", d.opts.ConfigPath, "socket", socket, "jails", jailCount, "dry_run", d.opts.DryRun)
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

// farmDecided hands the bans the farm's count decided to the ban path, each with the
// lines this host read of its address: its jail forgets them, as a ban decided here does.
func (d *Daemon) farmDecided(ctx context.Context, tickets []jails.Ticket) error {
	d.mu.RLock()
	for i, t := range tickets {
		if jr, ok := d.jails[t.Jail]; ok && t.Bits == 0 && t.Lines == nil {
			tickets[i].Lines = jr.jail.Decided(t.Addr)
		}
	}
	d.mu.RUnlock()
	return d.bans.Add(ctx, tickets)
}

// joinFarm makes this host's farm membership: linked to the manager, with its outbox in
// the database and the host's own addresses to announce. It dials at Run.
func (d *Daemon) joinFarm(ctx context.Context, m *metrics.Collector) error {
	fc := d.cfg.Farm
	f := farm.New(*fc, d.logger, d.opts.Clock)
	if err := f.LoadKeys(); err != nil {
		return fmt.Errorf("farm: %w", err)
	}
	f.SetObserver(m.ObserveFarm)
	f.SetOutbox(ctx, d.store)
	if err := f.LoadOutbox(ctx); err != nil {
		return fmt.Errorf("farm outbox: %w", err)
	}
	f.SetOwn(d.farmOwn(d.host.Prefixes()))
	d.manager.SetFarm(f)
	d.farm = f
	return nil
}

// farmJails tells the farm the jails of cfg.
func (d *Daemon) farmJails(cfg *config.Config) {
	if d.farm == nil {
		return
	}
	var js []farm.Jail
	for _, jc := range cfg.Jails {
		js = append(js, farm.Jail{Name: jc.Name, Mode: jc.Farm, MaxRetry: jc.MaxRetry, FindTime: jc.FindTime, BanTime: jc.BanTime,
			Ignore: jails.NewIgnoreList(d.jails[jc.Name].ignore...).WithHost(d.host).WithDirectory(d.directory)})
	}
	d.farm.SetJails(js)
}

// MetricsAddr returns the address metrics are served on, once Ready; "" if none.
func (d *Daemon) MetricsAddr() string { return d.metricsAddr }

// Ready is closed once Run has started every part: the control socket answers, and every
// log file is followed from the point it had reached when the reader was made.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// openStore opens the database and reads the saved file positions.
func (d *Daemon) openStore(ctx context.Context) error {
	s, err := store.Open(ctx, d.dbPath)
	if err != nil {
		return err
	}
	if sv := s.Salvaged(); sv != nil {
		d.logger.Error("DATABASE DAMAGED: moved aside, and what could be read of it salvaged into a new one; protecting with the rest",
			"database", d.dbPath, "damage", sv.Damage, "moved_to", sv.MovedTo,
			"bans_salvaged", sv.Bans, "positions_salvaged", sv.Positions, "history_salvaged", sv.History)
	}
	positions, err := s.Positions(ctx)
	if err != nil {
		s.Close()
		return err
	}
	d.mu.RLock()
	keep := longestTrust(d.cfg)
	d.mu.RUnlock()
	logins, err := s.KnownGood(ctx, d.opts.Clock.Now().Add(-keep))
	if err != nil {
		s.Close()
		return err
	}
	d.trust.Load(logins)
	keyBans, err := s.KeyBans(ctx)
	if err != nil {
		s.Close()
		return err
	}
	d.store, d.positions = s, positions
	d.endKeyBans(d.keyBans.Load(keyBans, d.opts.Clock.Now()), "expired while ban-server was stopped")
	d.manager.SetLedger(s)
	// A burst reaches the kernel at its pace, not SQLite's: positions wait for the records
	// (savePositions), so a crash before them reads the lines, and bans, again.
	d.manager.SetRecordBehind(true)
	return nil
}

// restore applies the bans recorded by the last run, each with the time it has left, as
// they are read: the actions start on the first while the rest are read.
func (d *Daemon) restore(ctx context.Context) error {
	start := time.Now()
	restored, expired, err := d.manager.Restore(ctx, d.store.EachBan(ctx))
	if err != nil {
		return err
	}
	if restored+expired > 0 {
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
		for _, p := range *jr.paths.Load() {
			if r, ok := d.readers[p]; !ok || r.Stats().Behind > 0 {
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
func (d *Daemon) savePositions(ctx context.Context, readers []*pipeline.Reader) {
	// The bans of accounts and devices made in the lines read go first, as the logins
	// below: a crash after the positions would otherwise lose them.
	if err := d.saveKeyBans(ctx); err != nil {
		d.logger.Error("saving bans", "err", err)
		return
	}
	moved := map[string]watcher.Position{}
	for _, r := range readers {
		path, p := r.Path(), r.Position()
		if p != d.positions[path] {
			moved[path] = p
		}
	}
	if len(moved) == 0 {
		return
	}
	if err := d.bans.Flush(ctx); err != nil {
		return // the bans found before the positions may not be recorded yet
	}
	d.manager.WaitRecorded(ctx) // they are applied; now they are recorded too
	// A ban whose record failed is only in memory: a crash would lose it, and the lines
	// that made it must then be read again. So the positions wait until it is recorded.
	if d.manager.Degraded().Unrecorded > 0 {
		return
	}
	// The logins that worked in the lines read go first: a crash after the positions
	// would otherwise lose them.
	if logins := d.trust.Unsaved(); len(logins) > 0 {
		if err := d.store.SaveKnownGood(ctx, logins); err != nil {
			d.trust.Unsave(logins) // saved at the next turn
			d.logger.Error("saving logins that worked", "err", err)
			return
		}
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
	path := d.dbPath
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
	s.LoadHistory()
	if err := s.SaveKeyBans(ctx, jails.KeyBanChanges{Saves: d.keyBans.List("")}); err != nil {
		d.logger.Error("recording the bans of accounts and devices in the new database", "database", path, "err", err)
	}
	if err := s.SavePositions(ctx, d.positions); err != nil {
		d.logger.Error("saving file positions in the new database", "database", path, "err", err)
	}
	if d.farm != nil {
		d.farm.SetOutbox(ctx, s)
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
	glob := time.NewTicker(globInterval)
	defer glob.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-skew.C:
			d.judgeSkew()
		case <-glob.C:
			d.followNewMatches(ctx)
		case <-check.C:
			if err := d.store.Check(ctx); errors.Is(err, store.ErrLost) {
				d.remakeStore(ctx, err)
			} else if err != nil {
				d.logger.Warn("checking the database", "err", err)
			}
		case answer := <-d.reloads:
			answer <- d.reload(ctx)
		case b := <-d.directorySaves:
			d.saveDirectory(ctx, b)
		case <-d.redo:
			d.mu.RLock()
			cfg := d.cfg
			d.mu.RUnlock()
			if err := d.apply(ctx, cfg, true); err != nil {
				d.logger.Error("the jails could not be built again with the directory's trusted proxies", "err", err)
			}
		case <-save.C:
			d.expireKeyBans()
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
			keep := longestTrust(d.cfg)
			d.mu.RUnlock()
			d.trust.Forget(now, keep)
			if rt := d.runningPolicy(); rt != nil {
				rt.server.Policy().Prune()
			}
		}
	}
}

// forwardLost passes each word of an action that what it made in the kernel was
// removed, and put back, on to keepKernelInStep, until the action stops.
func (d *Daemon) forwardLost(lost <-chan struct{}) {
	for range lost {
		select {
		case d.kernelLost <- struct{}{}:
		default: // a reconcile is asked already
		}
	}
}

// reconcileRetry is how soon actions busy at a reconcile are tried again.
const reconcileRetry = time.Second

// keepKernelInStep compares what the kernel actions hold with the bans in force, and
// repairs both ways: at start, once the actions have made the calls that restored the
// bans, and then every server.reconcile_interval, read after each round: a reload
// changes the next wait, and 0 ends the rounds until the next start.
func (d *Daemon) keepKernelInStep(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var busy []string // actions left for the next round, tried again soon, alone
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.kernelLost:
			busy = nil // every action: the one that lost its table, and any other it took along
		}
		repairs, stillBusy, err := d.manager.Reconcile(ctx, busy...)
		busy = stillBusy
		if err != nil {
			d.logger.Error("reconciling the kernel with the bans in force", "err", err)
		}
		for _, name := range slices.Sorted(maps.Keys(repairs)) {
			if r := repairs[name]; r.Restored > 0 || r.Removed > 0 {
				d.logger.Warn("the kernel differed from the bans in force; repaired", "action", name,
					"bans_restored", r.Restored, "holds_removed", r.Removed)
			}
		}
		d.mu.RLock()
		every := d.cfg.Server.ReconcileInterval
		d.mu.RUnlock()
		switch {
		case len(busy) > 0:
			timer.Reset(reconcileRetry)
		case every == 0:
			timer.Stop() // only an action's word that the kernel lost its bans brings a round
		default:
			timer.Reset(every)
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
	if !reflect.DeepEqual(d.cfg.Farm, cfg.Farm) {
		d.logger.Warn("[farm] changed; it takes effect at the next start")
	}
	oldPolicy := d.cfg.Policy
	if err := d.apply(ctx, cfg, true); err != nil {
		d.logger.Error("reload refused; the running configuration stays", "err", err)
		return err
	}
	// A changed [policy] starts the service anew (a quota of the same name, key and
	// window counts on where it stood, as do the flagged accounts); if
	// the new one cannot listen, the old one comes back.
	if !reflect.DeepEqual(oldPolicy, cfg.Policy) {
		if err := d.startPolicy(ctx, cfg.Policy); err != nil {
			d.logger.Error("[policy] not changed: the new one cannot start; the old one runs again", "err", err)
			if err2 := d.startPolicy(ctx, oldPolicy); err2 != nil {
				d.logger.Error("the old policy service cannot start again either; Postfix's smtpd_policy_service_default_action decides meanwhile", "err", err2)
			}
			return err
		}
	}
	d.reopenFiles()
	select { // a reload reads the directory again
	case d.directoryRead <- struct{}{}:
	default:
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
	if d.collector != nil {
		d.collector.Touch(slices.Sorted(maps.Keys(newActions))...)
	}

	// Files: one reader each, whatever the number of jails that watch it. A file's
	// start is the widest its jails ask for: beginning, else resume, else end; a file
	// that came to match a pattern after the pattern's first expansion is new, and is
	// read from its beginning.
	// The journal: one reader for each journal folder and matches, by its key.
	byPath := map[string][]*jails.Jail{}
	start := map[string]string{}
	expanded := map[string][]string{}
	journals := map[string]journal.Options{}
	for _, name := range slices.Sorted(maps.Keys(newJails)) {
		jr := newJails[name]
		if jr.cfg.Backend == config.BackendJournal {
			key := journal.Key(jr.cfg.JournalDirectory, jr.cfg.JournalMatch)
			byPath[key] = append(byPath[key], jr.jail)
			start[key] = widestStart(start[key], jr.cfg.Start)
			journals[key] = journal.Options{Directory: jr.cfg.JournalDirectory, Matches: jr.cfg.JournalMatch}
		}
		for _, pattern := range jr.cfg.LogPath {
			paths, capped := config.ExpandLogPath(pattern)
			if capped && !slices.Equal(paths, d.globbed[pattern]) {
				d.logger.Warn("a logpath pattern matches more files than it may follow; only the first by name are followed: narrow the pattern",
					"jail", name, "logpath", pattern, "followed", len(paths))
			}
			expanded[pattern] = paths
			for _, p := range paths {
				byPath[p] = append(byPath[p], jr.jail)
				start[p] = widestStart(start[p], jr.cfg.Start)
				if was, ok := d.globbed[pattern]; ok && !slices.Contains(was, p) {
					start[p] = config.StartBeginning
				}
			}
		}
	}
	newReaders := map[string]*pipeline.Reader{}
	for path, js := range byPath {
		if _, ok := d.readers[path]; ok {
			continue
		}
		var r *pipeline.Reader
		var err error
		if jo, ok := journals[path]; ok {
			jo.Start, jo.Resume, jo.MaxLineSize, jo.Logger = startOf(start[path]), d.positions[path], cfg.Server.MaxLineBytes, d.logger
			var f *journal.Follower
			if f, err = journal.Open(jo); err == nil {
				r = pipeline.New(f, js)
			}
		} else {
			r, err = pipeline.Open(path, js, watcher.Options{
				Start:       startOf(start[path]),
				Resume:      d.positions[path],
				MaxLineSize: cfg.Server.MaxLineBytes,
				Logger:      d.logger.With("file", path),
			})
		}
		if err != nil {
			for _, r := range newReaders {
				r.Stop()
			}
			stopAll(ctx, started, d.logger)
			return err
		}
		newReaders[path] = r
	}

	// Bans move to the new jails and actions. An action no jail keeps has
	// ActionDrainTime to make its last calls before it is stopped.
	drain, cancelDrain := context.WithTimeout(ctx, d.opts.ActionDrainTime)
	defer cancelDrain()
	for name := range d.jails {
		if _, ok := newJails[name]; !ok {
			d.manager.RemoveJail(drain, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(newJails)) {
		jr := newJails[name]
		named := make([]jails.NamedAction, len(jr.cfg.Actions))
		for i, a := range jr.cfg.Actions {
			named[i] = jails.NamedAction{Name: a, Action: newActions[a].action}
		}
		d.manager.SetJail(drain, name, jails.BanPolicy{BanTime: jr.cfg.BanTime, NetBanTime: jr.cfg.SubnetBanTime, Increment: jr.cfg.Increment}, named)
	}

	d.mu.Lock()
	oldActions := d.actions
	var gone []*pipeline.Reader
	for path, r := range d.readers {
		if _, ok := byPath[path]; !ok {
			r.Stop()
			gone = append(gone, r)
			delete(d.readers, path)
		}
	}
	for path, r := range d.readers {
		r.SetJails(byPath[path])
	}
	for path, r := range newReaders {
		d.readers[path] = r
		if read {
			r.Start(ctx, d.bans, d.opts.Clock, d.logger)
		}
	}
	d.cfg, d.jails, d.actions = cfg, newJails, newActions
	for _, jr := range newJails { // the files found above, not a second glob
		var paths []string
		if jr.cfg.Backend == config.BackendJournal {
			paths = append(paths, journal.Key(jr.cfg.JournalDirectory, jr.cfg.JournalMatch))
		}
		for _, pattern := range jr.cfg.LogPath {
			for _, p := range expanded[pattern] {
				if !slices.Contains(paths, p) {
					paths = append(paths, p)
				}
			}
		}
		jr.paths.Store(&paths)
	}
	d.globbed = expanded
	d.mu.Unlock()
	d.farmJails(cfg)
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

// reopenFiles has the actions that write files of their own open them again: a reload
// is what logrotate's postrotate asks for.
func (d *Daemon) reopenFiles() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, name := range slices.Sorted(maps.Keys(d.actions)) {
		if r, ok := d.actions[name].action.(actions.Reopener); ok {
			if err := r.Reopen(); err != nil {
				d.logger.Error("reopening an action's file; it writes to the old one", "action", name, "err", err)
			}
		}
	}
}

// globInterval is how often logpath patterns are expanded again, to follow files that
// came to match them.
var globInterval = 5 * time.Second

// followNewMatches follows the files that came to match the jails' logpath patterns,
// and lets go of those that no longer exist, by applying the running configuration
// again: jails, actions and bans stay as they are.
func (d *Daemon) followNewMatches(ctx context.Context) {
	d.mu.RLock()
	changed := false
	for pattern, was := range d.globbed {
		if config.IsPattern(pattern) && !slices.Equal(was, config.ExpandLogPaths([]string{pattern})) {
			changed = true
		}
	}
	cfg := d.cfg
	d.mu.RUnlock()
	if !changed {
		return
	}
	if err := d.apply(ctx, cfg, true); err != nil {
		d.logger.Error("following the files a logpath pattern matches now", "err", err)
		return
	}
	d.logger.Info("the files logpath patterns match changed; following them")
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
		if ov, ok := a.(actions.Overseer); ok {
			go d.forwardLost(ov.Lost())
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
	out := map[string]*jailRuntime{}
	for name, jc := range cfg.Jails {
		// Trusted proxies are stepped over in forwarded-for lists, and never banned.
		trusted := slices.Concat(cfg.Server.TrustedProxies, jc.TrustedProxies, d.directoryTrusted)
		ignore := slices.Concat(cfg.Server.IgnoreIP, jc.IgnoreIP, trusted) // and d.host, as it is at each check
		fc := cfg.Filters[jc.Filter]
		if old, ok := d.jails[name]; ok && old.cfg.Equal(jc) && slices.Equal(old.ignore, ignore) && slices.Equal(old.trusted, trusted) && old.filter.Definition.Equal(fc.Definition) {
			out[name] = old
			continue
		}
		f, err := fc.CompileFor(filters.Options{TrustedProxies: trusted, Successes: jc.TrustTime > 0})
		if err != nil {
			return nil, fmt.Errorf("jail %q: %w", name, err)
		}
		loc, err := config.ParseTimeZone(jc.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("jail %q: %w", name, err)
		}
		f.SetLocation(loc)
		settings := jails.Settings{MaxRetry: jc.MaxRetry, FindTime: jc.FindTime, Subnet: jc.Subnet, Key: jc.Key, BanAddresses: jc.BanAddresses,
			MaxTracked: jc.MaxTracked,
			Rate:       jc.Mode == config.ModeRate,
			Ignore:     jails.NewIgnoreList(ignore...).WithHost(d.host).WithDirectory(d.directory), Logger: d.logger}
		if jc.Key != jails.KeyAddress {
			settings.KeyBan = d.keyBanner(jc)
		}
		if jc.TrustTime > 0 {
			settings.Trust, settings.TrustTime = d.trust, jc.TrustTime
			settings.Notify = d.notifier(jc.Notify)
		}
		if d.farm != nil && jc.Farm == config.FarmCount {
			settings.Tally = d.farm
		}
		out[name] = &jailRuntime{cfg: jc, ignore: ignore, trusted: trusted, filter: fc, jail: jails.New(name, f, settings)}
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

// startReaders starts every reader that is not reading yet.
func (d *Daemon) startReaders(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.readers {
		if !r.Reading() {
			r.Start(ctx, d.bans, d.opts.Clock, d.logger)
		}
	}
}

// DefaultActionDrainTime is how long the actions have, at stop, to make the calls
// queued for them.
const DefaultActionDrainTime = 5 * time.Second

// shutdown stops the readers and saves where they stand, bans what they found, and
// lets each action make the calls queued for it for up to Options.ActionDrainTime; what a hung
// action still holds then is abandoned and logged: the bans are recorded, and the next
// start applies them again. An orderly shutdown then stops every action, which lifts
// what they put in the kernel (unless keep_on_stop); after a failure the kernel keeps
// it, as after a crash.
func (d *Daemon) shutdown(orderly bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	readers := slices.Collect(maps.Values(d.readers))
	for _, r := range readers {
		r.Stop()
	}
	clear(d.readers)
	d.savePositions(ctx, readers)
	d.bans.Close()
	drain, cancelDrain := context.WithTimeout(ctx, d.opts.ActionDrainTime)
	defer cancelDrain()
	began := time.Now()
	if left := d.manager.Close(drain); left > 0 {
		d.logger.Warn("action calls not made by the stop (queued behind a slow action, or failed and waiting for a retry) are abandoned; the bans are recorded, and applied again at the next start",
			"abandoned", left, "waited", time.Since(began).Round(time.Millisecond))
	}
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
