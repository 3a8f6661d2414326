package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/natsserver/natstest"
)

// policyAsk sends one request on conn and returns the answer's action.
func policyAsk(t *testing.T, conn net.Conn, r *bufio.Reader, attrs string) string {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "request=smtpd_access_policy\n"+attrs+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if blank, _ := r.ReadString('\n'); blank != "\n" {
		t.Fatalf("answer not ended by an empty line: %q", blank)
	}
	return strings.TrimSuffix(strings.TrimPrefix(line, "action="), "\n")
}

// The policy service through the server: a client banned in a jail is refused with the
// configured answer naming the jail, the 4th message of a user with a quota of 3 is
// deferred, an account logging in from three networks is flagged to the log action,
// and status policy shows it all.
func TestPolicyService(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "policy.sock")
	config := strings.Replace(baseConfig, `database = "run/logban.db"`, `database = "run/logban.db"
metrics = "127.0.0.1:0"`, 1)
	h := startIn(t, nil, strings.Replace(config, "[jails.sasl]", fmt.Sprintf(`[policy]
listen = "unix:%s"
reject_banned = "554 5.7.1 Access denied: {jail}"
timeout = "5s" # a loaded test machine may take longer than the default 100ms

[policy.quotas.outbound]
key      = "sasl_username"
messages = 3
window   = "1h"
action   = "DEFER_IF_PERMIT Sending quota exceeded, try later"

[policy.compromised]
distinct_networks = 3
window  = "1h"
actions = ["log"]

[jails.sasl]`, sock), 1), Options{})
	ctx := context.Background()
	if _, err := h.client.BanIP(ctx, "sasl", netip.MustParsePrefix("203.0.113.5/32")); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if got := policyAsk(t, conn, r, "protocol_state=CONNECT\nclient_address=203.0.113.5\n"); got != "554 5.7.1 Access denied: sasl" {
		t.Errorf("banned client: %q", got)
	}
	if got := policyAsk(t, conn, r, "protocol_state=CONNECT\nclient_address=198.51.100.7\n"); got != "DUNNO" {
		t.Errorf("another client: %q", got)
	}
	for i := range 4 {
		want := "DUNNO"
		if i == 3 {
			want = "DEFER_IF_PERMIT Sending quota exceeded, try later"
		}
		if got := policyAsk(t, conn, r, "protocol_state=DATA\nclient_address=198.51.100.7\nsasl_username=anna\nrecipient_count=1\n"); got != want {
			t.Errorf("message %d: %q, want %q", i+1, got, want)
		}
	}
	for _, a := range []string{"192.0.2.77", "198.51.100.8", "2001:db8::7"} {
		policyAsk(t, conn, r, "protocol_state=RCPT\nclient_address="+a+"\nsasl_username=bob\n")
	}
	want := `notice jail=policy kind=compromised addr=2001:db8::7 user="bob" what="logged in from 3 addresses in 3 networks within 1h0m0s: compromised?"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(h.banLog(), want) && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if !strings.Contains(h.banLog(), want) {
		t.Errorf("the log action's file:\n%s\nwant %s", h.banLog(), want)
	}
	st, err := h.client.PolicyStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 9 || st.Answers["banned"] != 1 || st.Answers["quota"] != 1 || len(st.Near) != 1 || st.Near[0].Holder != "anna" ||
		len(st.Flagged) != 1 || st.Flagged[0].Account != "bob" {
		t.Errorf("status %+v", st)
	}
	hasMetrics(t, metricsText(t, h), "logban_policy_requests_total 9", `logban_policy_answers_total{kind="banned"} 1`,
		`logban_policy_answers_total{kind="quota"} 1`, `logban_policy_answers_total{kind="dunno"} 7`,
		"logban_policy_malformed_total 0", "logban_policy_flagged_total 1")
}

// Two MTAs of a farm give one quota: of anna's 3 messages allowed, 2 go through mta1 and
// 1 through mta2, and her next, through mta1, is deferred.
func TestPolicyQuotaAcrossTheFarm(t *testing.T) {
	c := natstest.Start(t, 3)
	var hs []*harness
	var socks []string
	for i, node := range []string{"mta1", "mta2"} {
		sock := filepath.Join(t.TempDir(), "policy.sock")
		socks = append(socks, sock)
		config := farmConfig(node, append([]string{c.URL(i)}, c.URLs()...), true) + fmt.Sprintf(`
[policy]
listen = "unix:%s"
timeout = "5s" # a loaded test machine's farm may take longer than the default 100ms
[policy.quotas.outbound]
messages = 3
window   = "1h"
action   = "DEFER_IF_PERMIT Sending quota exceeded, try later"
`, sock)
		hs = append(hs, start(t, config, Options{}))
	}
	for _, h := range hs {
		waitFarm(t, h, func(s control.FarmStatus) bool { return s.State == "connected" && s.Synced })
	}
	send := func(i int) string {
		conn, err := net.Dial("unix", socks[i])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return policyAsk(t, conn, bufio.NewReader(conn), "protocol_state=DATA\nclient_address=198.51.100.7\nsasl_username=anna\nrecipient_count=1\n")
	}
	// farmErrors says how many messages each host's farm failed to count: a count that
	// failed may still have been stored, which the next messages would then meet.
	farmErrors := func() string {
		var s []string
		for i, h := range hs {
			st, err := h.client.PolicyStatus(context.Background())
			s = append(s, fmt.Sprintf("mta%d: %d farm errors (%v)", i+1, st.FarmErrors, err))
		}
		return strings.Join(s, ", ")
	}
	for k, i := range []int{0, 0, 1} {
		if got := send(i); got != "DUNNO" {
			t.Fatalf("message %d: %q; %s", k+1, got, farmErrors())
		}
	}
	if got := send(0); got != "DEFER_IF_PERMIT Sending quota exceeded, try later" {
		t.Errorf("the 4th message, the farm's quota being 3: %q; %s", got, farmErrors())
	}
	if st, err := hs[0].client.PolicyStatus(context.Background()); err != nil || !st.FarmCounted || st.FarmErrors != 0 {
		t.Errorf("status %+v, %v", st, err)
	}
}

// A quota's count survives a restart and a reload that keeps the quota: of anna's 6
// messages an hour, 3 go before a restart, 2 after it, 1 after a reload that changes
// another part of [policy] (and the quota's limit's action), and her 7th is deferred.
// A reload that changes the quota's window starts its count afresh.
func TestPolicyCountsSurviveRestartAndReload(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "policy.sock")
	policyConfig := func(rejectBanned, window string) string {
		return strings.Replace(baseConfig, "[jails.sasl]", fmt.Sprintf(`[policy]
listen = "unix:%s"
reject_banned = %q
timeout = "5s"

[policy.quotas.outbound]
key      = "sasl_username"
messages = 6
window   = %q
action   = "DEFER_IF_PERMIT Sending quota exceeded, try later"

[jails.sasl]`, sock, rejectBanned, window), 1)
	}
	h := startIn(t, nil, policyConfig("554 5.7.1 Access denied: {jail}", "1h"), Options{})
	send := func(n int, want string) {
		t.Helper()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		for i := range n {
			if got := policyAsk(t, conn, r, "protocol_state=DATA\nclient_address=198.51.100.7\nsasl_username=anna\nrecipient_count=1\n"); got != want {
				t.Fatalf("message %d of %d: %q, want %q", i+1, n, got, want)
			}
		}
	}
	send(3, "DUNNO")
	h.shutdown()
	h.run(Options{})
	send(2, "DUNNO")
	h.writeConfig(policyConfig("554 5.7.1 Banned here: {jail}", "1h"))
	if err := h.client.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	send(1, "DUNNO")
	send(1, "DEFER_IF_PERMIT Sending quota exceeded, try later")

	h.writeConfig(policyConfig("554 5.7.1 Banned here: {jail}", "2h"))
	if err := h.client.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	send(6, "DUNNO") // a quota of another window counts afresh
}
