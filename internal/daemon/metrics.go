package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics reads the daemon's state when Prometheus scrapes, and times action calls.
type metrics struct {
	d       *Daemon
	latency *prometheus.HistogramVec

	linesRead, bytesBehind, longLines      *prometheus.Desc
	failures, bans, unbans, active, errors *prometheus.Desc
	unrecorded, undeleted, clockOffset     *prometheus.Desc
}

func newMetrics(d *Daemon) *metrics {
	return &metrics{
		d: d,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "logban_action_duration_seconds",
			Help:    "How long action calls take.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10), // 50µs to 13s
		}, []string{"action", "op"}),
		linesRead:   prometheus.NewDesc("logban_file_lines_read_total", "Lines read from a log file.", []string{"file"}, nil),
		bytesBehind: prometheus.NewDesc("logban_file_bytes_behind", "Bytes written to a log file and not yet read.", []string{"file"}, nil),
		longLines:   prometheus.NewDesc("logban_file_long_lines_total", "Lines cut at server.max_line_bytes.", []string{"file"}, nil),
		failures:    prometheus.NewDesc("logban_jail_failures_total", "Failures counted by a jail.", []string{"jail"}, nil),
		bans:        prometheus.NewDesc("logban_jail_bans_total", "Bans made by a jail.", []string{"jail"}, nil),
		unbans:      prometheus.NewDesc("logban_jail_unbans_total", "Bans of a jail lifted, by expiry or by hand.", []string{"jail"}, nil),
		active:      prometheus.NewDesc("logban_jail_bans_active", "Bans in force.", []string{"jail"}, nil),
		errors:      prometheus.NewDesc("logban_action_errors_total", "Action calls that failed.", []string{"action"}, nil),
		unrecorded:  prometheus.NewDesc("logban_bans_unrecorded", "Bans in force whose record in the database failed and is retried; file positions are not saved meanwhile.", nil, nil),
		undeleted:   prometheus.NewDesc("logban_bans_undeleted", "Ended bans whose record could not be deleted yet.", nil, nil),
		clockOffset: prometheus.NewDesc("logban_jail_clock_offset_seconds", "How far a jail's line times lie steadily behind the host's clock (negative: ahead); 0 until such an offset is found.", []string{"jail"}, nil),
	}
}

// observe times one action call.
func (m *metrics) observe(action string, unban bool, took time.Duration, _ error) {
	op := "ban"
	if unban {
		op = "unban"
	}
	m.latency.WithLabelValues(action, op).Observe(took.Seconds())
}

// Describe sends the descriptions of the metrics read at scrape time.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.linesRead, m.bytesBehind, m.longLines, m.failures, m.bans, m.unbans, m.active, m.errors, m.unrecorded, m.undeleted, m.clockOffset} {
		ch <- d
	}
}

// Collect reads the daemon's state.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	d := m.d
	now := d.opts.Clock.Now()
	d.mu.RLock()
	for path, r := range d.readers {
		st := r.follower.Stats()
		ch <- prometheus.MustNewConstMetric(m.linesRead, prometheus.CounterValue, float64(st.Lines), path)
		ch <- prometheus.MustNewConstMetric(m.bytesBehind, prometheus.GaugeValue, float64(st.Behind), path)
		ch <- prometheus.MustNewConstMetric(m.longLines, prometheus.CounterValue, float64(st.LongLines), path)
	}
	for name, jr := range d.jails {
		ch <- prometheus.MustNewConstMetric(m.failures, prometheus.CounterValue, float64(jr.jail.Counts(now).TotalFailed), name)
		offset := 0.0
		if sk := jr.skew.Load(); sk != nil {
			offset = sk.Offset.Seconds()
		}
		ch <- prometheus.MustNewConstMetric(m.clockOffset, prometheus.GaugeValue, offset, name)
		if c, err := d.manager.Counts(name); err == nil {
			ch <- prometheus.MustNewConstMetric(m.bans, prometheus.CounterValue, float64(c.TotalBanned), name)
			ch <- prometheus.MustNewConstMetric(m.unbans, prometheus.CounterValue, float64(c.TotalUnbanned), name)
			ch <- prometheus.MustNewConstMetric(m.active, prometheus.GaugeValue, float64(c.CurrentlyBanned), name)
		}
	}
	d.mu.RUnlock()
	for action, n := range d.manager.ActionErrors() {
		ch <- prometheus.MustNewConstMetric(m.errors, prometheus.CounterValue, float64(n), action)
	}
	g := d.manager.Degraded()
	ch <- prometheus.MustNewConstMetric(m.unrecorded, prometheus.GaugeValue, float64(g.Unrecorded))
	ch <- prometheus.MustNewConstMetric(m.undeleted, prometheus.GaugeValue, float64(g.Undeleted))
}

// serveMetrics serves /metrics on addr until ctx is done.
func (d *Daemon) serveMetrics(ctx context.Context, ln net.Listener, m *metrics) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, m.latency)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
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
