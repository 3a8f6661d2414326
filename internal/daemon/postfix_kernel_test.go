package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/netnstest"
	"github.com/logban/logban/internal/testenv"
	"github.com/logban/logban/internal/zimbra"
)

// postfixPort is where the test's Postfix takes mail, on the lab server's address.
const postfixPort = 2525

// startPostfix runs a Postfix of the test's own in the lab's server namespace: its own
// configuration, queue and data folders in a temporary folder, never the system's, with
// smtpd on the server's address at postfixPort asking the policy service at policy
// when the client connects (smtpd_delay_reject = no: before AUTH) and before each
// message's data. Mail for sink.test is discarded; XCLIENT from the lab's clients
// sets the SASL login as a submission client's AUTH would. It is stopped when the test
// ends.
func startPostfix(t *testing.T, lab *netnstest.Lab, policy string) {
	t.Helper()
	dir := postfixDir(t)
	runPostfix(t, lab, dir, fmt.Sprintf(`smtpd_delay_reject = no
smtpd_client_restrictions = check_policy_service %s
smtpd_data_restrictions = check_policy_service %s
`, policy, policy), "", nil)
}

// postfixDir makes the folder of a test's own Postfix: etc, spool (its queue, with the
// private folder a policy socket goes in) and data.
func postfixDir(t *testing.T) string {
	t.Helper()
	testenv.RequireTool(t, "postfix", "postfix")
	pf, err := user.Lookup("postfix")
	if err != nil {
		testenv.Skip(t, "no postfix user (apt-get install postfix)")
	}
	dir, err := os.MkdirTemp("", "logban-postfix-") // smtpd, as postfix, must reach it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, d := range []string{"etc", "spool", "data", "spool/private"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(pf.Uid)
	os.Chown(filepath.Join(dir, "data"), uid, -1)
	os.Chown(filepath.Join(dir, "spool", "private"), uid, -1)
	os.Chmod(filepath.Join(dir, "spool", "private"), 0o700)
	return dir
}

// runPostfix runs a Postfix of the test's own from dir (postfixDir) in the lab's server
// namespace: its own configuration, queue and data folders, never the system's, with
// smtpd on the server's address at postfixPort, main.cf's lines (restrictions) and
// master.cf's extra services, and then main.cf settings applied with postconf -e, as
// an administrator would. Mail for sink.test is discarded; XCLIENT from the lab's clients
// sets the SASL login as a submission client's AUTH would. It is stopped when the test
// ends.
func runPostfix(t *testing.T, lab *netnstest.Lab, dir, mainLines, masterExtra string, settings []zimbra.Setting) {
	t.Helper()
	postfix := testenv.RequireTool(t, "postfix", "postfix")
	postconf := testenv.RequireTool(t, "postconf", "postfix")
	etc, spool, data := filepath.Join(dir, "etc"), filepath.Join(dir, "spool"), filepath.Join(dir, "data")
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.logban.test
mydestination = sink.test
local_recipient_maps =
local_transport = discard
inet_interfaces = %s
inet_protocols = ipv4
maillog_file = %s
maillog_file_prefixes = %s
smtpd_authorized_xclient_hosts = %s
%s`, spool, data, netnstest.Server4, filepath.Join(dir, "postfix.log"), dir, netnstest.RemoteNet4.String()+", 192.0.2.0/24", mainLines)
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(master), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 8 && f[0] == "smtp" && f[1] == "inet":
			line = fmt.Sprintf("%d inet n - n - - smtpd", postfixPort)
		case len(f) >= 8 && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") && f[4] == "y":
			f[4] = "n" // no chroot: the queue is the test's
			line = strings.Join(f, " ")
		}
		out = append(out, line)
	}
	out = append(out, masterExtra)
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		args := []string{"-c", etc, "-e", s.Name + "=" + s.Value}
		if out, err := exec.Command(postconf, args...).CombinedOutput(); err != nil || len(out) > 0 {
			t.Fatalf("postconf %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	run := func(args ...string) {
		t.Helper()
		var out []byte
		var err error
		lab.Do(func() { out, err = exec.Command(postfix, append([]string{"-c", etc}, args...)...).CombinedOutput() })
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
			t.Fatalf("postfix %s: %v\n%s\n%s", strings.Join(args, " "), err, out, log)
		}
	}
	run("post-install", "create-missing")
	run("start")
	t.Cleanup(func() {
		lab.Do(func() { exec.Command(postfix, "-c", etc, "stop").Run() })
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
			t.Logf("postfix.log:\n%s", log)
		}
	})
	until(t, "Postfix takes connections", func() bool { return lab.Connect(netnstest.Other4, postfixPort) == nil })
}

// smtpSession is an SMTP client from one of the lab's client addresses.
type smtpSession struct {
	t    *testing.T
	conn net.Conn
	text *textproto.Conn
}

// dialSMTP connects from src and returns the session and the server's greeting (its
// code and text).
func dialSMTP(t *testing.T, lab *netnstest.Lab, src netip.Addr) (*smtpSession, int, string) {
	t.Helper()
	return dialSMTPAt(t, lab, src, postfixPort)
}

// dialSMTPAt is dialSMTP to port.
func dialSMTPAt(t *testing.T, lab *netnstest.Lab, src netip.Addr, port int) (*smtpSession, int, string) {
	t.Helper()
	conn, err := lab.Dial(src, port)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	s := &smtpSession{t: t, conn: conn, text: textproto.NewConn(conn)}
	t.Cleanup(func() { conn.Close() })
	code, msg, _ := s.text.ReadResponse(0)
	return s, code, msg
}

// cmd sends a command and returns the reply's code and text.
func (s *smtpSession) cmd(format string, args ...any) (int, string) {
	s.t.Helper()
	id, err := s.text.Cmd(format, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.text.StartResponse(id)
	defer s.text.EndResponse(id)
	code, msg, _ := s.text.ReadResponse(0)
	return code, msg
}

// sendPast logs the session in as user (XCLIENT, which sets the SASL login as AUTH
// would), sends n messages from user that must go, and returns the reply to the next.
func (s *smtpSession) sendPast(user string, n int) (int, string) {
	s.t.Helper()
	if code, msg := s.cmd("XCLIENT LOGIN=%s", user); code != 220 {
		s.t.Fatalf("XCLIENT: %d %s", code, msg)
	}
	s.cmd("EHLO client.test")
	for i := range n {
		if code, msg := s.send(user); code != 250 {
			s.t.Fatalf("message %d of %s: %d %s", i+1, user, code, msg)
		}
	}
	return s.send(user)
}

// send sends one message to sink.test and returns the reply to its data's end (or to
// DATA itself, where that refused it).
func (s *smtpSession) send(from string) (int, string) {
	s.t.Helper()
	if code, msg := s.cmd("MAIL FROM:<%s>", from); code != 250 {
		return code, msg
	}
	if code, msg := s.cmd("RCPT TO:<box@sink.test>"); code != 250 {
		return code, msg
	}
	if code, msg := s.cmd("DATA"); code != 354 {
		s.cmd("RSET")
		return code, msg
	}
	w := s.text.DotWriter()
	fmt.Fprintf(w, "Subject: test\r\n\r\nhello\r\n")
	w.Close()
	code, msg, _ := s.text.ReadResponse(0)
	return code, msg
}

// A real Postfix asks ban-server's policy service: a client banned in a jail is refused
// when it connects, with the configured answer; one not banned delivers; the 201st
// message of one SASL user within the hour is deferred, and another user's goes.
func TestPostfixAsksThePolicyService(t *testing.T) {
	config := strings.Replace(baseConfig, `ignoreip = ["192.0.2.0/24"]`, "", 1) // the lab's clients
	lab, h := startInLab(t, strings.Replace(config, "[jails.sasl]", `[policy]
listen = "127.0.0.1:10031"
reject_banned = "554 5.7.1 Access denied: {jail}"
timeout = "5s" # a loaded test machine may take longer than the default 100ms

[policy.quotas.outbound]
key      = "sasl_username"
messages = 200
window   = "1h"
action   = "DEFER_IF_PERMIT Sending quota exceeded, try later"

[jails.sasl]`, 1))
	startPostfix(t, lab, "inet:127.0.0.1:10031")
	ctx := context.Background()
	if rs, err := h.client.BanIP(ctx, "sasl", netip.PrefixFrom(netnstest.Client4, 32)); err != nil || !rs[0].Done {
		t.Fatalf("banip: %+v, %v", rs, err)
	}

	// smtpd_delay_reject = no: the client restriction answers the connection itself,
	// before any AUTH.
	if _, code, greeting := dialSMTP(t, lab, netnstest.Client4); code != 554 || !strings.Contains(greeting, "Access denied: sasl") {
		t.Errorf("banned client's greeting: %d %q; want 554 ... Access denied: sasl", code, greeting)
	}

	s, _, _ := dialSMTP(t, lab, netnstest.Other4)
	if code, msg := s.cmd("EHLO client.test"); code != 250 {
		t.Fatalf("EHLO: %d %s", code, msg)
	}
	if code, msg := s.send("someone@example.com"); code != 250 {
		t.Errorf("a client not banned: %d %s", code, msg)
	}
	// As anna, through XCLIENT (what AUTH on the submission port sets): 200 go, the 201st
	// waits.
	if code, msg := s.sendPast("anna@example.com", 200); code != 450 || !strings.Contains(msg, "Sending quota exceeded") {
		t.Errorf("message 201 of anna: %d %q; want 450 ... Sending quota exceeded", code, msg)
	}
	s2, _, _ := dialSMTP(t, lab, netnstest.Other4)
	s2.cmd("EHLO client.test")
	s2.cmd("XCLIENT LOGIN=bob@example.com")
	s2.cmd("EHLO client.test")
	if code, msg := s2.send("bob@example.com"); code != 250 {
		t.Errorf("bob's first message: %d %s", code, msg)
	}
	st, err := h.client.PolicyStatus(ctx)
	if err != nil || st.Answers["banned"] < 1 || st.Answers["quota"] != 1 {
		t.Errorf("policy status %+v, %v", st, err)
	}
}

// When a part of ban-server fails, Postfix is answered DUNNO and mail flows: here the
// farm the quotas count in cannot be reached, and anna's message is delivered, counted
// on this host alone, the farm's failure counted.
func TestPostfixGoesOnWhenTheFarmIsAway(t *testing.T) {
	config := strings.Replace(baseConfig, `ignoreip = ["192.0.2.0/24"]`, "", 1)
	config = strings.Replace(config, "[jails.sasl]", `[farm]
name = "test"
node = "mta1"
servers = ["nats://127.0.0.1:1"] # nothing listens: the farm is away

[policy]
listen = "127.0.0.1:10031"
timeout = "5s" # a loaded test machine may take longer than the default 100ms

[policy.quotas.outbound]
messages = 200
window   = "1h"

[jails.sasl]
farm = "local"`, 1)
	lab, h := startInLab(t, config)
	startPostfix(t, lab, "inet:127.0.0.1:10031")
	s, _, _ := dialSMTP(t, lab, netnstest.Other4)
	s.cmd("EHLO client.test")
	if code, msg := s.cmd("XCLIENT LOGIN=anna@example.com"); code != 220 {
		t.Fatalf("XCLIENT: %d %s", code, msg)
	}
	s.cmd("EHLO client.test")
	if code, msg := s.send("anna@example.com"); code != 250 {
		t.Errorf("with the farm away: %d %s; want the message delivered", code, msg)
	}
	st, err := h.client.PolicyStatus(context.Background())
	if err != nil || st.FarmErrors != 1 || st.Answers["dunno"] < 1 || len(st.Near) != 0 {
		t.Errorf("policy status %+v, %v", st, err)
	}
}

// submissionPort is the test Postfix's submission service, set up as Zimbra's
// master.cf.in sets up "submission inet": its own client restrictions (logged-in
// clients only) and no data restrictions, so main.cf's never reach it.
const submissionPort = 2587

// The Postfix settings ban-client setup zimbra --postfix prints, applied with postconf
// to a real Postfix whose submission service is Zimbra's, work as printed: on port 25 a
// banned client is refused at RCPT TO (Postfix's default smtpd_delay_reject = yes); on
// submission a logged-in user's 3rd message of 2 is deferred at DATA; and with
// ban-server stopped, mail still flows (default_action=DUNNO).
func TestPostfixWiredAsSetupPrints(t *testing.T) {
	dir := postfixDir(t)
	socket := filepath.Join(dir, "spool", zimbra.PolicySocketName)
	config := strings.Replace(baseConfig, `ignoreip = ["192.0.2.0/24"]`, "", 1)
	lab, h := startInLab(t, strings.Replace(config, "[jails.sasl]", fmt.Sprintf(`[policy]
listen = "unix:%s"
socket_group = "postfix"
reject_banned = "554 5.7.1 Access denied: {jail}"
timeout = "5s"

[policy.quotas.outbound]
key      = "sasl_username"
messages = 2
window   = "1h"

[jails.sasl]`, socket), 1))
	settings := zimbra.PostfixSettings(zimbra.PolicySocketName, "reject_unauth_pipelining", "reject_unauth_pipelining",
		[]string{fmt.Sprintf("%d/inet", submissionPort)})
	// Zimbra's submission entry, its two restriction lines replaced as printed.
	master := fmt.Sprintf(`%d inet n - n - - smtpd
  -o smtpd_sasl_auth_enable=yes
  %s
  %s
  -o smtpd_helo_restrictions=
  -o smtpd_recipient_restrictions=
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o syslog_name=postfix/submission
`, submissionPort, settings[2].MasterOption(), settings[3].MasterOption())
	runPostfix(t, lab, dir, "", master, settings[:2])
	ctx := context.Background()
	if rs, err := h.client.BanIP(ctx, "sasl", netip.PrefixFrom(netnstest.Client4, 32)); err != nil || !rs[0].Done {
		t.Fatalf("banip: %+v, %v", rs, err)
	}

	// Port 25: the banned client is refused its recipient; another's mail goes.
	s, _, _ := dialSMTP(t, lab, netnstest.Client4)
	s.cmd("EHLO client.test")
	if code, msg := s.send("x@example.com"); code != 554 || !strings.Contains(msg, "Access denied: sasl") {
		t.Errorf("banned client on port 25: %d %q; want 554 ... Access denied: sasl", code, msg)
	}
	s, _, _ = dialSMTP(t, lab, netnstest.Other4)
	s.cmd("EHLO client.test")
	if code, msg := s.send("someone@example.com"); code != 250 {
		t.Errorf("a client not banned on port 25: %d %s", code, msg)
	}

	// Submission: anna's 3rd message of 2 waits, at DATA.
	s, code, greeting := dialSMTPAt(t, lab, netnstest.Other4, submissionPort)
	if code != 220 {
		t.Fatalf("submission greeting: %d %s", code, greeting)
	}
	s.cmd("EHLO client.test")
	if code, msg := s.sendPast("anna@example.com", 2); code != 450 || !strings.Contains(msg, "quota") {
		t.Errorf("anna's 3rd message on submission: %d %q; want 450 ... quota", code, msg)
	}

	// ban-server stopped: Postfix answers for it, DUNNO, and mail flows.
	h.shutdown()
	s, _, _ = dialSMTP(t, lab, netnstest.Other4)
	s.cmd("EHLO client.test")
	if code, msg := s.send("someone@example.com"); code != 250 {
		t.Errorf("with ban-server stopped, port 25: %d %s; want 250 (default_action=DUNNO)", code, msg)
	}
}
