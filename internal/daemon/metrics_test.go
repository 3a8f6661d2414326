package daemon

import (
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/logban/logban/internal/control"
)

func TestMetricsAfterABan(t *testing.T) {
	cfg := strings.Replace(baseConfig, `database = "run/logban.db"`, `database = "run/logban.db"
metrics = "127.0.0.1:0"`, 1)
	h := start(t, cfg, Options{})
	h.fail("203.0.113.5", 3)
	h.waitFor("sasl", func(s control.JailStatus) bool { return s.CurrentlyBanned == 1 && queuesEmpty(s) })

	body := metricsText(t, h)
	for _, want := range []string{
		`logban_jail_failures_total{jail="sasl"} 3`,
		`logban_jail_bans_total{jail="sasl"} 1`,
		`logban_jail_bans_active{jail="sasl"} 1`,
		`logban_jail_unbans_total{jail="sasl"} 0`,
		`logban_file_lines_read_total{file="` + h.log + `"} 3`,
		`logban_file_bytes_behind{file="` + h.log + `"} 0`,
		`logban_action_duration_seconds_count{action="log",op="ban"} 1`,
		`logban_action_queued{action="log"} 0`,
		`logban_action_duration_seconds_count{action="log",op="unban"} 0`, // there from the start
		`logban_jail_ignored_total{jail="sasl"} 0`,
		`logban_filter_lines_total{filter="zimbra-submission",jail="sasl",result="matched"} 3`,
		`logban_filter_lines_total{filter="zimbra-submission",jail="sasl",result="ignored"} 0`,
		`logban_build_info{goversion="` + runtime.Version() + `",version=""} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", regexp.MustCompile(`(?m)^#.*\n`).ReplaceAllString(body, ""))
	}
}

// metricsText returns what the harness's daemon serves at /metrics (its configuration
// says metrics = "127.0.0.1:0").
func metricsText(t *testing.T, h *harness) string {
	t.Helper()
	resp, err := http.Get("http://" + h.d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// hasMetrics reports each line of wants that the metrics text lacks.
func hasMetrics(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}
