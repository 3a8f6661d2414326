// Package metrics serves ban-server's figures to Prometheus: what it read, counted and
// banned, how its actions fare, and what it cannot do as it should. The figures are read
// from a Snapshot when Prometheus scrapes; only action call times are kept here.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Snapshot is the server's state at one moment, as the metrics show it.
type Snapshot struct {
	// Version is the server's version, shown by logban_build_info.
	Version string
	Files   []File
	Jails   []Jail
	Actions []Action
	// Unrecorded are bans in force whose record failed; Undeleted, ended bans whose
	// record could not be deleted yet.
	Unrecorded, Undeleted int
	// Farm is the farm's state; nil outside a farm.
	Farm *Farm
	// Policy is the Postfix policy service's figures; nil without one.
	Policy *Policy
}

// Policy is the Postfix policy service's figures.
type Policy struct {
	Requests, Malformed, Flagged int64
	Answers                      map[string]int64 // by kind
	// Refused are connections of peers that may not ask; Accepting is false while the
	// service cannot accept (degraded) or has stopped; Conns are those being served.
	Refused   int64
	Accepting bool
	Conns     int64
	// Dropped are quota holders and accounts let go at their tables' bounds.
	Dropped int64
}

// Farm is this host's membership of its farm.
type Farm struct {
	Connected bool
	// Outbox are decisions and unbans waiting to be published; Bans, the farm's bans.
	Outbox, Bans int
	// FailuresShared and FailuresDropped are failures published for counting, and not.
	FailuresShared, FailuresDropped int64
	// Refused are bans refused because the address is a farm node's.
	Refused int64
	// Forged are values refused because their signature did not hold.
	Forged int64
}

// File is how reading one log file goes.
type File struct {
	Path                     string
	Lines, Behind, LongLines int64
}

// Jail is one jail's counts.
type Jail struct {
	Name     string
	Failures int64
	// Ignored are failures of addresses on the jail's ignore list, not counted.
	Ignored int64
	// Filter is the jail's filter; FilterDropped, the failures it set aside itself
	// (ignoreregex).
	Filter           string
	FilterDropped    int64
	Banned, Unbanned int64
	Active           int
	ClockOffset      time.Duration // 0 until a steady offset is found
	// NetsFailing are networks with failing addresses within the subnet findtime;
	// NetsRefused, networks that reached the subnet's addresses but hold an address
	// never banned.
	NetsFailing int
	NetsRefused int64
	// KnownGood are failures not counted because the address logged in to the account
	// recently; Logins, the logins that worked seen.
	KnownGood, Logins int64
	// KeyBans are the bans of accounts or devices in force, in a jail keyed by them.
	KeyBans int
	// Evicted are addresses, networks and keys let go at their table's bound.
	Evicted int64
}

// Action is one action's calls.
type Action struct {
	Name string
	// Errors are calls that failed; Queued, calls waiting or being made; Overflowed,
	// calls that found the action's queue full.
	Errors, Queued, Overflowed int64
	// Restored and Removed are the repairs reconciling made: bans the kernel had lost,
	// applied again, and holds no ban stood behind, lifted.
	Restored, Removed int64
}

// Collector reads a Snapshot when Prometheus scrapes, and times action calls.
type Collector struct {
	snapshot func() Snapshot
	latency  *prometheus.HistogramVec
	farm     *prometheus.HistogramVec

	farmConnected, farmOutbox, farmBans, farmFailures, farmRefused *prometheus.Desc
	farmForged                                                     *prometheus.Desc
	netsFailing, netsRefused, knownGood, logins, keyBans           *prometheus.Desc
	evicted                                                        *prometheus.Desc
	policyRequests, policyAnswers, policyMalformed, policyFlagged  *prometheus.Desc
	policyRefused, policyAccepting, policyConns, policyDropped     *prometheus.Desc

	linesRead, bytesBehind, longLines      *prometheus.Desc
	failures, bans, unbans, active, errors *prometheus.Desc
	queued, overflowed, repairs            *prometheus.Desc
	unrecorded, undeleted, clockOffset     *prometheus.Desc
	ignored, buildInfo, filterLines        *prometheus.Desc
}

// New returns a collector that reads the server's state from snapshot.
func New(snapshot func() Snapshot) *Collector {
	return &Collector{
		snapshot: snapshot,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "logban_action_duration_seconds",
			Help:    "How long action calls take.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10), // 50µs to 13s
		}, []string{"action", "op"}),
		farm: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "logban_farm_latency_seconds",
			Help:    "Farm latencies: stage=\"publish\" from a decision here until the farm holds it, \"apply\" from a decision elsewhere until it is in force here.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 3, 12), // 100µs to 18s
		}, []string{"stage"}),
		policyRequests:  prometheus.NewDesc("logban_policy_requests_total", "Postfix policy requests answered.", nil, nil),
		policyAnswers:   prometheus.NewDesc("logban_policy_answers_total", "Postfix policy answers by kind: dunno, banned (a client banned in a jail refused), quota (over a quota), default (the service could not decide in time).", []string{"kind"}, nil),
		policyMalformed: prometheus.NewDesc("logban_policy_malformed_total", "Postfix policy requests not read (malformed, too long, half sent): their connections closed.", nil, nil),
		policyFlagged:   prometheus.NewDesc("logban_policy_flagged_total", "Accounts flagged as logging in from too many addresses or networks within the window.", nil, nil),
		policyRefused:   prometheus.NewDesc("logban_policy_refused_total", "Policy connections closed unread: the peer is not Postfix (not an allowed user, not an allowed host).", nil, nil),
		policyAccepting: prometheus.NewDesc("logban_policy_accepting", "1 while the policy service accepts connections; 0 while it cannot (out of descriptors) or has stopped.", nil, nil),
		policyConns:     prometheus.NewDesc("logban_policy_connections", "Policy connections being served.", nil, nil),
		policyDropped:   prometheus.NewDesc("logban_policy_dropped_total", "Quota holders and accounts let go at their tables' bounds before their windows ended.", nil, nil),
		farmForged:      prometheus.NewDesc("logban_farm_forged_total", "Farm values (bans, node entries) refused because their signature did not hold: written as another node, or by no node of the farm.", nil, nil),
		farmConnected:   prometheus.NewDesc("logban_farm_connected", "1 while connected to the farm's NATS servers.", nil, nil),
		farmOutbox:      prometheus.NewDesc("logban_farm_outbox", "Decisions and unbans waiting to be published to the farm.", nil, nil),
		farmBans:        prometheus.NewDesc("logban_farm_bans", "Bans the farm holds, as last watched.", nil, nil),
		farmFailures:    prometheus.NewDesc("logban_farm_failures_total", "Failures of counting jails: shared=\"yes\" published for the farm's count, \"no\" counted here alone (farm away, or too many at once).", []string{"shared"}, nil),
		farmRefused:     prometheus.NewDesc("logban_farm_refused_total", "Bans refused because the address is a farm node's.", nil, nil),
		ignored:         prometheus.NewDesc("logban_jail_ignored_total", "Failures of addresses on a jail's ignore list (ignoreip, trusted proxies, the host's own), not counted.", []string{"jail"}, nil),
		filterLines:     prometheus.NewDesc("logban_filter_lines_total", "Lines a jail's filter judged failures: result=\"matched\" counted (ignored addresses included), \"ignored\" set aside by the filter (ignoreregex, or a fault the format says was the server's).", []string{"jail", "filter", "result"}, nil),
		buildInfo:       prometheus.NewDesc("logban_build_info", "1, labelled with the server's version and the Go version it was built with.", []string{"version", "goversion"}, nil),
		linesRead:       prometheus.NewDesc("logban_file_lines_read_total", "Lines read from a log file.", []string{"file"}, nil),
		bytesBehind:     prometheus.NewDesc("logban_file_bytes_behind", "Bytes written to a log file and not yet read.", []string{"file"}, nil),
		longLines:       prometheus.NewDesc("logban_file_long_lines_total", "Lines cut at server.max_line_bytes.", []string{"file"}, nil),
		failures:        prometheus.NewDesc("logban_jail_failures_total", "Failures counted by a jail.", []string{"jail"}, nil),
		bans:            prometheus.NewDesc("logban_jail_bans_total", "Bans made by a jail.", []string{"jail"}, nil),
		unbans:          prometheus.NewDesc("logban_jail_unbans_total", "Bans of a jail lifted, by expiry or by hand.", []string{"jail"}, nil),
		active:          prometheus.NewDesc("logban_jail_bans_active", "Bans in force.", []string{"jail"}, nil),
		errors:          prometheus.NewDesc("logban_action_errors_total", "Action calls that failed.", []string{"action"}, nil),
		queued:          prometheus.NewDesc("logban_action_queued", "Action calls waiting in the action's queue or being made.", []string{"action"}, nil),
		overflowed:      prometheus.NewDesc("logban_action_overflowed_total", "Action calls that found the action's queue full and waited in its overflow, where only the last call per address is kept.", []string{"action"}, nil),
		repairs:         prometheus.NewDesc("logban_action_repairs_total", "Differences between what a kernel action held and the bans in force, repaired by reconciling: repair=\"restored\" for a ban the kernel had lost, \"removed\" for a hold no ban stood behind.", []string{"action", "repair"}, nil),
		unrecorded:      prometheus.NewDesc("logban_bans_unrecorded", "Bans in force whose record in the database failed and is retried; file positions are not saved meanwhile.", nil, nil),
		undeleted:       prometheus.NewDesc("logban_bans_undeleted", "Ended bans whose record could not be deleted yet.", nil, nil),
		netsFailing:     prometheus.NewDesc("logban_jail_subnets_failing", "Networks with failing addresses within a jail's subnet findtime ([jails.NAME.subnet]).", []string{"jail"}, nil),
		netsRefused:     prometheus.NewDesc("logban_jail_subnet_refused_total", "Networks whose addresses reached a jail's subnet escalation but that were not banned: they hold an address never banned (ignoreip, trusted proxies, the host's own).", []string{"jail"}, nil),
		evicted:         prometheus.NewDesc("logban_jail_evicted_total", "Addresses, networks and keys a jail let go at its tables' bound (max_tracked) before findtime ended: a flood of new ones pushed them out, those with the fewest failures first.", []string{"jail"}, nil),
		knownGood:       prometheus.NewDesc("logban_jail_known_good_failures_total", "Failures not counted because the address logged in to the same account within the jail's trust_time: a device with a stale password, most likely.", []string{"jail"}, nil),
		keyBans:         prometheus.NewDesc("logban_jail_key_bans_active", "Bans of accounts or devices in force, in a jail keyed by user or device (no firewall holds them: the log, mail, webhook and exec actions hear of them).", []string{"jail"}, nil),
		logins:          prometheus.NewDesc("logban_jail_logins_total", "Logins that worked, read by a jail that trusts them (successregex, or its built-in filter's).", []string{"jail"}, nil),
		clockOffset:     prometheus.NewDesc("logban_jail_clock_offset_seconds", "How far a jail's line times lie steadily behind the host's clock (negative: ahead); 0 until such an offset is found.", []string{"jail"}, nil),
	}
}

// Observe times one action call. It is a jails.Manager observer.
func (c *Collector) Observe(action string, unban bool, took time.Duration, _ error) {
	op := "ban"
	if unban {
		op = "unban"
	}
	c.latency.WithLabelValues(action, op).Observe(took.Seconds())
}

// Touch makes the call-time metrics of the named actions exist, at zero, before their
// first call: a dashboard sees every action from the start.
func (c *Collector) Touch(actions ...string) {
	for _, a := range actions {
		c.latency.WithLabelValues(a, "ban")
		c.latency.WithLabelValues(a, "unban")
	}
}

// ObserveFarm records one farm latency; stage is "publish" or "apply". It is a
// farm.Observer.
func (c *Collector) ObserveFarm(stage string, took time.Duration) {
	c.farm.WithLabelValues(stage).Observe(took.Seconds())
}

// Describe sends the descriptions of the metrics read at scrape time.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.linesRead, c.bytesBehind, c.longLines, c.failures, c.bans, c.unbans, c.active,
		c.errors, c.queued, c.overflowed, c.repairs, c.unrecorded, c.undeleted, c.clockOffset,
		c.farmConnected, c.farmOutbox, c.farmBans, c.farmFailures, c.farmRefused, c.farmForged, c.ignored, c.buildInfo, c.filterLines, c.netsFailing, c.netsRefused, c.knownGood, c.logins, c.keyBans, c.evicted,
		c.policyRequests, c.policyAnswers, c.policyMalformed, c.policyFlagged, c.policyRefused, c.policyAccepting, c.policyConns, c.policyDropped} {
		ch <- d
	}
}

// Collect reads a snapshot of the server's state.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	ch <- prometheus.MustNewConstMetric(c.buildInfo, prometheus.GaugeValue, 1, s.Version, runtime.Version())
	for _, f := range s.Files {
		ch <- prometheus.MustNewConstMetric(c.linesRead, prometheus.CounterValue, float64(f.Lines), f.Path)
		ch <- prometheus.MustNewConstMetric(c.bytesBehind, prometheus.GaugeValue, float64(f.Behind), f.Path)
		ch <- prometheus.MustNewConstMetric(c.longLines, prometheus.CounterValue, float64(f.LongLines), f.Path)
	}
	for _, j := range s.Jails {
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(j.Failures), j.Name)
		ch <- prometheus.MustNewConstMetric(c.ignored, prometheus.CounterValue, float64(j.Ignored), j.Name)
		ch <- prometheus.MustNewConstMetric(c.filterLines, prometheus.CounterValue, float64(j.Failures+j.Ignored), j.Name, j.Filter, "matched")
		ch <- prometheus.MustNewConstMetric(c.filterLines, prometheus.CounterValue, float64(j.FilterDropped), j.Name, j.Filter, "ignored")
		ch <- prometheus.MustNewConstMetric(c.clockOffset, prometheus.GaugeValue, j.ClockOffset.Seconds(), j.Name)
		ch <- prometheus.MustNewConstMetric(c.netsFailing, prometheus.GaugeValue, float64(j.NetsFailing), j.Name)
		ch <- prometheus.MustNewConstMetric(c.netsRefused, prometheus.CounterValue, float64(j.NetsRefused), j.Name)
		ch <- prometheus.MustNewConstMetric(c.knownGood, prometheus.CounterValue, float64(j.KnownGood), j.Name)
		ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(j.Evicted), j.Name)
		ch <- prometheus.MustNewConstMetric(c.logins, prometheus.CounterValue, float64(j.Logins), j.Name)
		ch <- prometheus.MustNewConstMetric(c.keyBans, prometheus.GaugeValue, float64(j.KeyBans), j.Name)
		ch <- prometheus.MustNewConstMetric(c.bans, prometheus.CounterValue, float64(j.Banned), j.Name)
		ch <- prometheus.MustNewConstMetric(c.unbans, prometheus.CounterValue, float64(j.Unbanned), j.Name)
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(j.Active), j.Name)
	}
	for _, a := range s.Actions {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(a.Errors), a.Name)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(a.Queued), a.Name)
		ch <- prometheus.MustNewConstMetric(c.overflowed, prometheus.CounterValue, float64(a.Overflowed), a.Name)
		ch <- prometheus.MustNewConstMetric(c.repairs, prometheus.CounterValue, float64(a.Restored), a.Name, "restored")
		ch <- prometheus.MustNewConstMetric(c.repairs, prometheus.CounterValue, float64(a.Removed), a.Name, "removed")
	}
	ch <- prometheus.MustNewConstMetric(c.unrecorded, prometheus.GaugeValue, float64(s.Unrecorded))
	ch <- prometheus.MustNewConstMetric(c.undeleted, prometheus.GaugeValue, float64(s.Undeleted))
	if f := s.Farm; f != nil {
		connected := 0.0
		if f.Connected {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(c.farmConnected, prometheus.GaugeValue, connected)
		ch <- prometheus.MustNewConstMetric(c.farmOutbox, prometheus.GaugeValue, float64(f.Outbox))
		ch <- prometheus.MustNewConstMetric(c.farmBans, prometheus.GaugeValue, float64(f.Bans))
		ch <- prometheus.MustNewConstMetric(c.farmFailures, prometheus.CounterValue, float64(f.FailuresShared), "yes")
		ch <- prometheus.MustNewConstMetric(c.farmFailures, prometheus.CounterValue, float64(f.FailuresDropped), "no")
		ch <- prometheus.MustNewConstMetric(c.farmRefused, prometheus.CounterValue, float64(f.Refused))
		ch <- prometheus.MustNewConstMetric(c.farmForged, prometheus.CounterValue, float64(f.Forged))
	}
	if p := s.Policy; p != nil {
		ch <- prometheus.MustNewConstMetric(c.policyRequests, prometheus.CounterValue, float64(p.Requests))
		ch <- prometheus.MustNewConstMetric(c.policyMalformed, prometheus.CounterValue, float64(p.Malformed))
		ch <- prometheus.MustNewConstMetric(c.policyFlagged, prometheus.CounterValue, float64(p.Flagged))
		ch <- prometheus.MustNewConstMetric(c.policyRefused, prometheus.CounterValue, float64(p.Refused))
		ch <- prometheus.MustNewConstMetric(c.policyAccepting, prometheus.GaugeValue, boolGauge(p.Accepting))
		ch <- prometheus.MustNewConstMetric(c.policyConns, prometheus.GaugeValue, float64(p.Conns))
		ch <- prometheus.MustNewConstMetric(c.policyDropped, prometheus.CounterValue, float64(p.Dropped))
		for _, kind := range []string{"dunno", "banned", "quota", "default"} {
			ch <- prometheus.MustNewConstMetric(c.policyAnswers, prometheus.CounterValue, float64(p.Answers[kind]), kind)
		}
	}
}

// Limits of the metrics server, so that whoever reaches its port (any local user, on
// loopback) cannot hold its descriptors: at most MaxConns connections at once (more
// wait to be accepted), each closed after IdleTimeout without a request, and a
// request must arrive within ReadTimeout and its answer leave within WriteTimeout.
var (
	MaxConns     = 64
	IdleTimeout  = 30 * time.Second
	ReadTimeout  = 10 * time.Second
	WriteTimeout = 30 * time.Second
)

// Serve serves /metrics on ln until ctx is done.
func (c *Collector) Serve(ctx context.Context, ln net.Listener) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, c.latency, c.farm)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: ReadTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout,
		IdleTimeout: IdleTimeout, MaxHeaderBytes: 16 << 10}
	ln = netutil.LimitListener(ln, MaxConns)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // shutting down; nothing to tell
	})
	defer stop()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
