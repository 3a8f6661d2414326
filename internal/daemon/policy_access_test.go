package daemon

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

const quotaRequest = "request=smtpd_access_policy\nprotocol_state=DATA\nclient_address=198.51.100.7\nsasl_username=anna\nrecipient_count=1\n\n"

// A local user who is not Postfix connects to the policy service on loopback and asks
// about an account, as Postfix would: the connection is closed unanswered, nothing is
// counted against the account, and the refusal is counted and shown. Root, and
// Postfix's user, are answered.
func TestPolicyOverTCPAnswersOnlyPostfix(t *testing.T) {
	testenv.RequireRoot(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPorts(t, 1)[0])
	config := strings.Replace(baseConfig, `database = "run/logban.db"`, `database = "run/logban.db"
metrics = "127.0.0.1:0"`, 1)
	h := start(t, strings.Replace(config, "[jails.sasl]", fmt.Sprintf(`[policy]
listen = %q
timeout = "5s"

[policy.quotas.outbound]
messages = 1
window   = "1h"

[jails.sasl]`, addr), 1), Options{})
	got, err := testenv.DialAs(t, testenv.Nobody, testenv.Nobody, "tcp", addr, strings.Repeat(quotaRequest, 3))
	if err != nil {
		t.Fatal(err)
	}
	if got != "" {
		t.Fatalf("a local user who is not Postfix was answered %q", got)
	}
	// The account's one message is still its own to send: nothing was counted.
	got, err = testenv.DialAs(t, 0, 0, "tcp", addr, quotaRequest)
	if err != nil || got != "action=DUNNO\n\n" {
		t.Fatalf("root: %q, %v; want DUNNO (anna's quota untouched)", got, err)
	}
	if pf, err := user.Lookup("postfix"); err == nil {
		uid, _ := strconv.Atoi(pf.Uid)
		gid, _ := strconv.Atoi(pf.Gid)
		got, err = testenv.DialAs(t, uint32(uid), uint32(gid), "tcp", addr, quotaRequest)
		if err != nil || !strings.HasPrefix(got, "action=DEFER_IF_PERMIT") {
			t.Errorf("postfix: %q, %v; want anna's second message deferred", got, err)
		}
	} else if testenv.Required() {
		t.Error("no postfix user on this host (apt-get install postfix)")
	}
	st, err := h.client.PolicyStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Refused != 1 || st.State != "accepting" {
		t.Errorf("status: refused %d, state %q; want 1 refused while accepting", st.Refused, st.State)
	}
	hasMetrics(t, metricsText(t, h), "logban_policy_refused_total 1", "logban_policy_accepting 1")
}

// The policy socket's mode and group let Postfix's group in and nobody else: a local
// user gets "permission denied", in a folder anyone may pass through.
func TestPolicySocketLetsOnlyItsGroupIn(t *testing.T) {
	testenv.RequireRoot(t)
	dir, err := os.MkdirTemp("", "policy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "policy.sock")
	start(t, strings.Replace(baseConfig, "[jails.sasl]", fmt.Sprintf(`[policy]
listen = "unix:%s"
timeout = "5s"

[jails.sasl]`, sock), 1), Options{})
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	wantGid := -1
	if g, err := user.LookupGroup("postfix"); err == nil {
		wantGid, _ = strconv.Atoi(g.Gid)
	} else if testenv.Required() {
		t.Error("no postfix group on this host (apt-get install postfix)")
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case wantGid >= 0 && (fi.Mode().Perm() != 0o660 || int(st.Gid) != wantGid):
		t.Errorf("socket mode %v group %d, want 0660 and postfix's group %d", fi.Mode().Perm(), st.Gid, wantGid)
	case wantGid < 0 && fi.Mode().Perm() != 0o600:
		t.Errorf("socket mode %v without a postfix group, want 0600", fi.Mode().Perm())
	}
	got, err := testenv.DialAs(t, testenv.Nobody, testenv.Nobody, "unix", sock, quotaRequest)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("a local user connected to the policy socket: %q, %v", got, err)
	}
	if wantGid >= 0 {
		pf, err := user.Lookup("postfix")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(pf.Uid)
		got, err := testenv.DialAs(t, uint32(uid), uint32(wantGid), "unix", sock, quotaRequest)
		if err != nil || got != "action=DUNNO\n\n" {
			t.Errorf("postfix's user in postfix's group: %q, %v", got, err)
		}
	}
}
