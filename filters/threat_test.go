package filters

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// The threat model of each built-in format (builtin/testdata/README.md), held by tests:
// lines are made the way the server writes them, from the fields the server writes (the
// true client address among them) and the fields the client writes, which may hold
// anything the server lets through. Whatever the client's fields hold, the filter must
// find the true address: never another one (a client could get a third party banned)
// and never none (a client could brute-force uncounted).

// injected is the address every trick tries to get counted.
const injected = "6.6.6.6"

// tricks are what a client writes into a field it controls: brackets, Zimbra's escape,
// the field names the address is read from, alert text, commas, and whole copies of
// failure lines of every format, each naming the injected address.
var tricks = func() []string {
	t := []string{
		"", "x", "]", "[", "] [", "[" + injected + "]", "unknown[" + injected + "]", ";", ";;", ";;;",
		";oip=" + injected + ";", ";;oip=" + injected + ";;", "oip=" + injected, "ip=" + injected + ",",
		"ip=" + injected + ";", "] [oip=" + injected + ";] ", "x] [oip=" + injected + ";ua=x",
		"DOS ALERT: Request rejected ip=" + injected + ", session=null, user=null",
		": DOS ALERT: ip=" + injected + ",", ", ", ",", "," + injected + ",", ", " + injected,
		"Connection lost to authentication server", "Invalid authentication mechanism",
		": SASL LOGIN authentication failed: Connection lost to authentication server",
		"error=authentication failed for [", " authentication failed", "%eth0", "\t", "\x00",
		"Mozilla/5.0 [en] (X11; U; Linux i686)", "a]b@example.com", "x;oip=192.0.2.66;",
	}
	for _, line := range []string{
		postfixParts{}.withDefaults().line(injected),
		auditParts{}.withDefaults().line(injected),
		jettyParts{}.withDefaults().line(injected),
	} {
		t = append(t, line, " "+line, "x] "+line, "\n"+line)
	}
	return t
}()

// noControl stands for what every server here does to a field: no line ending reaches the
// log (Postfix and Jetty escape control characters, ZimbraLog turns CR and LF into
// spaces). A client text holding a newline that a server wrote raw would start a line of
// its own, which no reader of single lines can tell from a real one; see the README.
func noControl(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// noSpace removes white space: for the client's text in a field the server splits on it
// (a Postfix AUTH argument, a request URL), or that the setup keeps free of it (a Host
// header reaching mailboxd through the proxy).
func noSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if isSpace(byte(r)) && r < 0x80 || r == '\v' {
			return -1
		}
		return r
	}, noControl(s))
}

// zimbraEscape is ZimbraLog's escaping of a context or encodeAttrs value.
func zimbraEscape(s string) string { return strings.ReplaceAll(noControl(s), ";", ";;") }

// postfixParts is a Postfix SASL failure line. The client writes mech and user.
type postfixParts struct {
	stamp, host, program, client, port, reason string
	mech, user                                 string
}

func (p postfixParts) withDefaults() postfixParts {
	if p.stamp == "" {
		p.stamp = "Mar  5 16:01:34"
	}
	if p.host == "" {
		p.host = "mta1"
	}
	if p.program == "" {
		p.program = "postfix/submission/smtpd[4242]"
	}
	if p.client == "" {
		p.client = "unknown"
	}
	if p.reason == "" {
		p.reason = "authentication failure"
	}
	if p.mech == "" {
		p.mech = "LOGIN"
	}
	return p
}

func (p postfixParts) line(addr string) string {
	l := fmt.Sprintf("%s %s %s: warning: %s[%s]%s: SASL %s authentication failed: %s",
		p.stamp, p.host, p.program, p.client, addr, p.port, noSpace(p.mech), p.reason)
	if p.user != "" {
		l += ", sasl_username=" + noControl(p.user)
	}
	return l
}

// auditParts is a mailbox.log line of a failed login. The client writes the host in the
// thread's URL, ua, the name it logged in as (in the context and the message), and the
// X-Forwarded-For header the proxy extends (forged, the start of oip).
type auditParts struct {
	thread, kind, reason string
	host, ua, name       string
	forged               []string // the client's X-Forwarded-For entries
	proxied              bool     // oip (through the proxy) rather than ip
	behindBalancer       bool     // a trusted load balancer appended the client
}

func (p auditParts) withDefaults() auditParts {
	if p.thread == "" {
		p.thread = "qtp1635701107-12"
	}
	if p.reason == "" {
		p.reason = "invalid password"
	}
	if p.host == "" {
		p.host = "mail.example.com"
	}
	return p
}

// balancer is the load balancer auditParts puts in front of the proxy; tests trust it.
const balancer = "198.51.100.250"

func (p auditParts) line(addr string) string {
	var ctx strings.Builder
	if p.name != "" {
		ctx.WriteString("name=" + zimbraEscape(p.name) + ";")
	}
	if p.proxied {
		xff := append([]string(nil), p.forged...)
		xff = append(xff, addr)
		if p.behindBalancer {
			xff = append(xff, balancer)
		}
		ctx.WriteString("ip=192.0.2.10;oip=" + zimbraEscape(strings.Join(xff, ", ")) + ";")
	} else {
		ctx.WriteString("ip=" + addr + ";")
	}
	if p.ua != "" {
		ctx.WriteString("ua=" + zimbraEscape(p.ua) + ";")
	}
	thread := p.thread + ":https://" + noSpace(p.host) + "/service/soap/AuthRequest"
	name := noControl(p.name)
	var msg string
	switch p.kind {
	case "soap":
		msg = "SoapEngine - handler exception: authentication failed for [" + name + "], " + p.reason
	case "imap":
		thread = "ImapSSLServer-3"
		msg = "imap - authentication failed for [" + name + "] (" + p.reason + ")"
	case "account":
		thread = "Pop3SSLServer-7"
		msg = "account - authentication failed for [" + name + "] (no such account)"
	case "lookup":
		// The proxy's lookup of an account that does not exist: the proxy (trusted) makes
		// the request, Zimbra appends the Client-IP nginx sent after the client's name.
		return fmt.Sprintf("2026-03-05 16:01:34,123 INFO  [qtp1-14:http://192.0.2.20:7072/service/extension/nginx-lookup] [ip=%s;] "+
			"security - Error occurred during authentication: account not found for [%s]. oip=%s", balancer, name, addr)
	default:
		msg = "security - cmd=Auth; account=u@example.com; protocol=soap; error=" +
			zimbraEscape("authentication failed for ["+p.name+"], "+p.reason) + ";"
	}
	return fmt.Sprintf("2026-03-05 16:01:34,123 WARN  [%s] [%s] %s", thread, ctx.String(), msg)
}

// jettyParts is a DoSFilter alert in zmmailboxd.out or mailbox.log. The client writes the
// URL in the thread name (its Host header and path) and the session id; the user and
// overlimit fields are the client's to influence too.
type jettyParts struct {
	form                        int // 0: Jetty 9 StdErrLog, 1: Jetty 10, 2: Jetty 7, 3: mailbox.log
	kind                        string
	host, path, session, user   string
	overlimit, bracketedAddress bool
}

func (p jettyParts) withDefaults() jettyParts {
	if p.kind == "" {
		p.kind = "Request rejected "
	}
	if p.host == "" {
		p.host = "mail.example.com"
	}
	if p.path == "" {
		p.path = "/service/soap/SearchRequest"
	}
	if p.session == "" {
		p.session = "null"
	}
	if p.user == "" {
		p.user = "null"
	}
	return p
}

func (p jettyParts) line(addr string) string {
	// Jetty escapes control characters in a message.
	esc := func(s string) string { return strings.NewReplacer("\n", "|", "\r", "<").Replace(s) }
	ip := addr
	if p.bracketedAddress && strings.Contains(addr, ":") {
		ip = "[" + addr + "]"
	}
	alert := "DOS ALERT: " + p.kind + "ip=" + ip + ", "
	if p.overlimit {
		alert += "overlimit=OverLimit@1[type=AUTH, id=" + esc(p.user) + ", duration=PT1S, count=31], "
	}
	alert += "session=" + esc(p.session) + ", user=" + esc(p.user)
	thread := "qtp1027591600-190:https://" + noSpace(p.host) + noSpace(p.path)
	switch p.form {
	case 1:
		return "2024-06-01 09:00:00.001:WARN :oejs.DoSFilter:" + thread + ": " + alert
	case 2:
		return "2013-01-15 15:57:32.537:WARN:oejs.DoSFilter:" + strings.ReplaceAll(alert, ", ", ",")
	case 3:
		return "2026-03-05 16:00:00,001 WARN  [" + thread + "] [] DoSFilter - " + alert
	}
	return "2021-03-31 10:01:51.917:WARN:oejs.DoSFilter:" + thread + ": " + alert
}

// judge runs f over line and returns the address it counts, or "none".
func judge(f *Filter, line string) string {
	m, r := f.Match([]byte(line), now)
	if r != Matched {
		return "none"
	}
	return m.Addr.String()
}

// trustBalancer is the Options the tests run mailbox-auth with.
var trustBalancer = Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix(balancer + "/32")}}

// For every field of a Postfix failure line that the client writes, every trick: the
// true address, always.
func TestPostfixClientFieldsDecideNothing(t *testing.T) {
	f := builtin(t, "zimbra-submission", Options{})
	const addr = "203.0.113.5"
	fields := map[string]func(*postfixParts, string){
		"mechanism": func(p *postfixParts, s string) { p.mech = s },
		"user name": func(p *postfixParts, s string) { p.user = s },
		"client name": func(p *postfixParts, s string) { // a verified host name, or unknown
			if k, _ := run([]byte(s), 0, isWord); k == len(s) && s != "" {
				p.client = s
			}
		},
	}
	for name, set := range fields {
		for _, trick := range tricks {
			p := postfixParts{}.withDefaults()
			set(&p, trick)
			if p.mech = noSpace(p.mech); p.mech == "" {
				p.mech = "LOGIN" // a client sends a mechanism
			}
			if line := p.line(addr); judge(f, line) != addr {
				t.Errorf("%s %q: got %s, want %s\n%s", name, trick, judge(f, line), addr, line)
			}
		}
	}
}

// For every field of a mailbox.log failure that the client writes, in every kind of
// line, proxied or not: the true address, always.
func TestMailboxAuthClientFieldsDecideNothing(t *testing.T) {
	f := builtin(t, "zimbra-mailbox-auth", trustBalancer)
	const addr = "203.0.113.41"
	fields := map[string]func(*auditParts, string){
		"host":           func(p *auditParts, s string) { p.host = s },
		"user agent":     func(p *auditParts, s string) { p.ua = s },
		"login name":     func(p *auditParts, s string) { p.name = s },
		"forwarded-for":  func(p *auditParts, s string) { p.forged = []string{s} },
		"forwarded-for2": func(p *auditParts, s string) { p.forged = []string{injected, s} },
	}
	for name, set := range fields {
		for _, kind := range []string{"security", "soap", "imap", "account", "lookup"} {
			for _, proxied := range []bool{false, true} {
				for _, trick := range tricks {
					p := auditParts{kind: kind, proxied: proxied, behindBalancer: proxied}.withDefaults()
					set(&p, trick)
					if line := p.line(addr); judge(f, line) != addr {
						t.Errorf("%s %q (%s, proxied %v): got %s, want %s\n%s", name, trick, kind, proxied, judge(f, line), addr, line)
					}
				}
			}
		}
	}
}

// For every field of a DoSFilter alert that the client writes, in every form Jetty
// writes: the true address, always.
func TestDoSFilterClientFieldsDecideNothing(t *testing.T) {
	f := builtin(t, "zimbra-dosfilter", Options{})
	fields := map[string]func(*jettyParts, string){
		"host":    func(p *jettyParts, s string) { p.host = s },
		"path":    func(p *jettyParts, s string) { p.path = "/" + s },
		"session": func(p *jettyParts, s string) { p.session = s },
		"user":    func(p *jettyParts, s string) { p.user = s },
	}
	for name, set := range fields {
		for form := range 4 {
			for _, kind := range []string{"Request rejected ", "Request throttled ", "Request delayed=20ms, "} {
				for _, addr := range []string{"203.0.113.33", "2001:db8:30::4"} {
					for _, trick := range tricks {
						p := jettyParts{form: form, kind: kind, overlimit: form == 1, bracketedAddress: form == 1}.withDefaults()
						set(&p, trick)
						if line := p.line(addr); judge(f, line) != addr {
							t.Errorf("%s %q (form %d, %s): got %s, want %s\n%s", name, trick, form, kind, judge(f, line), addr, line)
						}
					}
				}
			}
		}
	}
}

// The rightmost forwarded-for entry outside the trusted proxies is the client, whatever
// the client put before it: a model of nginx's real_ip_recursive against the reader.
func TestForwardedClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:ff::/48")}
	tests := []struct{ list, want string }{
		{"203.0.113.9", "203.0.113.9"},
		{"192.0.2.66, 203.0.113.9", "203.0.113.9"},
		{"192.0.2.66,203.0.113.9", "203.0.113.9"},
		{"6.6.6.6, 203.0.113.9, 198.51.100.7", "203.0.113.9"},
		{"6.6.6.6, 203.0.113.9, 198.51.100.7, 198.51.100.8", "203.0.113.9"},
		{"198.51.100.7", "none"},                              // every hop trusted
		{"garbage, 203.0.113.9", "203.0.113.9"},               // the client's text is never read
		{"203.0.113.9, garbage", "none"},                      // a trusted hop's entry must be an address
		{"203.0.113.9, garbage, 198.51.100.7", "none"},        //
		{"[2001:db8::9]:4711, 2001:db8:ff::1", "2001:db8::9"}, // load balancers that add ports
		{"203.0.113.9:4711", "203.0.113.9"},
		{"::ffff:203.0.113.9", "203.0.113.9"},
		{"fe80::1%eth0", "fe80::1"},
		{"", "none"},
		{",", "none"},
		{"203.0.113.9 ,", "none"},
	}
	for _, tt := range tests {
		got := "none"
		if a, ok := forwardedClient([]byte(tt.list), trusted); ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("%q: got %s, want %s", tt.list, got, tt.want)
		}
	}
}

// The forms of line the issue reports as missed or misread, each with its answer.
func TestFormatsOnceMissed(t *testing.T) {
	tests := []struct{ filter, line, want string }{
		// mechanism case
		{"zimbra-submission", "Mar  5 16:01:34 mta1 postfix/submission/smtpd[1]: warning: unknown[203.0.113.5]: SASL login authentication failed: UGFzc3dvcmQ6", "203.0.113.5"},
		{"zimbra-smtp-auth", "Mar  5 16:01:34 mta1 postfix/smtpd[1]: warning: unknown[203.0.113.5]: SASL Plain authentication failed: authentication failure", "203.0.113.5"},
		// unpadded day
		{"zimbra-smtp-auth", "Aug 3 15:30:49 mta1 postfix/smtpd[1]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: x", "203.0.113.5"},
		// not a password failure
		{"zimbra-smtp-auth", "Aug 3 15:30:49 mta1 postfix/smtpd[1]: warning: unknown[203.0.113.5]: SASL X authentication failed: Invalid authentication mechanism", "none"},
		// link-local with a zone, as getnameinfo writes it
		{"zimbra-submission", "Mar  5 16:01:34 mta1 postfix/submission/smtpd[1]: warning: unknown[fe80::1%eth0]: SASL LOGIN authentication failed: x", "fe80::1"},
		// Request throttled; Jetty 7/8's delayed form
		{"zimbra-dosfilter", "2015-02-01 10:00:00.001:WARN:oejs.DoSFilter:DOS ALERT: Request throttled ip=203.0.113.91,session=null,user=null", "203.0.113.91"},
		{"zimbra-dosfilter", "2015-02-01 10:00:00.001:WARN:oejs.DoSFilter:DOS ALERT: Request delayed=100ms ip=203.0.113.92,session=null,user=null", "203.0.113.92"},
		// an oip list, plain
		{"zimbra-mailbox-auth", "2026-03-05 16:01:34,123 WARN  [qtp1-1:https://h/service/soap] [oip=192.0.2.66, 203.0.113.9;] security - cmd=Auth; account=a@b; protocol=soap; error=authentication failed for [a@b], invalid password;", "203.0.113.9"},
		// the account line, counted once; its companion not at all
		{"zimbra-mailbox-auth", "2026-03-05 16:01:34,123 INFO  [ImapSSLServer-35] [ip=203.0.113.80;] account - authentication failed for [nosuch@example.com] (no such account)", "203.0.113.80"},
		{"zimbra-mailbox-auth", "2026-03-05 16:01:34,123 WARN  [ImapSSLServer-35] [ip=203.0.113.80;] security - Error occurred during authentication: authentication failed for [nosuch@example.com]. Reason: account not found.", "none"},
	}
	for _, tt := range tests {
		if got := judge(builtin(t, tt.filter, Options{}), tt.line); got != tt.want {
			t.Errorf("%s: got %s, want %s\n%s", tt.filter, got, tt.want, tt.line)
		}
	}
}

// A random genuine line of each format, from r: server fields varied among their real
// forms, client fields drawn from clientText. The oracle is the address put in the
// server's field.
func randomPostfix(r *rand.Rand, clientText func() string) (string, string) {
	p := postfixParts{
		stamp:   pick(r, "Mar  5 16:01:34", "Mar 15 16:01:34", "Aug 3 15:30:49", "2026-03-05T16:01:37.123456+01:00", "2026-03-05T16:01:37Z"),
		program: pick(r, "postfix/submission/smtpd[4242]", "postfix-in/submission/smtpd[1]"),
		client:  pick(r, "unknown", "host-7.example.net", "a_b-c.d"),
		port:    pick(r, "", ":50123"),
		reason:  pick(r, "authentication failure", "UGFzc3dvcmQ6", "Password:", "(reason unavailable)", "generic failure"),
		mech:    clientText(),
		user:    pick(r, "", clientText()),
	}.withDefaults()
	if p.mech = noSpace(p.mech); p.mech == "" {
		p.mech = "PLAIN"
	}
	addr := randomAddr(r)
	return p.line(addr), addr
}

func randomAudit(r *rand.Rand, clientText func() string) (string, string) {
	p := auditParts{
		kind:           pick(r, "security", "soap", "imap", "account", "lookup"),
		reason:         pick(r, "invalid password", "account lockout", "account not found"),
		host:           clientText(),
		ua:             pick(r, "", clientText()),
		name:           pick(r, "", clientText()),
		proxied:        r.IntN(2) == 0,
		behindBalancer: r.IntN(2) == 0,
	}.withDefaults()
	for range r.IntN(3) {
		p.forged = append(p.forged, clientText())
	}
	addr := randomAddr(r)
	return p.line(addr), addr
}

func randomJetty(r *rand.Rand, clientText func() string) (string, string) {
	p := jettyParts{
		form:             r.IntN(4),
		kind:             pick(r, "Request rejected ", "Request throttled ", "Request delayed=20ms, "),
		host:             clientText(),
		path:             "/" + clientText(),
		session:          clientText(),
		user:             pick(r, "null", clientText()),
		overlimit:        r.IntN(2) == 0,
		bracketedAddress: r.IntN(2) == 0,
	}.withDefaults()
	addr := randomAddr(r)
	return p.line(addr), addr
}

func pick(r *rand.Rand, xs ...string) string { return xs[r.IntN(len(xs))] }

func randomAddr(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(r.IntN(256)), 14: byte(r.IntN(256))}).String()
	}
	return netip.AddrFrom4([4]byte{203, 0, 113, byte(r.IntN(256))}).String()
}

// fuzzLine checks, for one line made by gen from the fuzzer's text, that filter finds the
// address the line was made with.
func fuzzLine(t *testing.T, f *Filter, gen func(*rand.Rand, func() string) (string, string), seed uint64, text string) {
	r := rand.New(rand.NewPCG(seed, seed>>7))
	parts := strings.Split(text, "\x1f") // the fuzzer's text, cut into client fields
	k := 0
	clientText := func() string {
		s := parts[k%len(parts)]
		k++
		return s
	}
	line, want := gen(r, clientText)
	if got := judge(f, line); got != want {
		t.Fatalf("got %s, want %s\n%q", got, want, line)
	}
}

// fuzzSeeds gives each fuzz target the tricks as its starting corpus.
func fuzzSeeds(f *testing.F) {
	for i, trick := range tricks {
		f.Add(uint64(i), trick)
		f.Add(uint64(i)*7919, trick+"\x1f"+tricks[(i+1)%len(tricks)]+"\x1f"+tricks[(i+2)%len(tricks)])
	}
}

// FuzzPostfixSubmission: the address counted is the one Postfix wrote, whatever the
// client's mechanism and user name hold.
// go test -fuzz FuzzPostfixSubmission ./filters
func FuzzPostfixSubmission(f *testing.F) {
	fuzzSeeds(f)
	flt := builtin(f, "zimbra-submission", Options{})
	f.Fuzz(func(t *testing.T, seed uint64, text string) { fuzzLine(t, flt, randomPostfix, seed, text) })
}

// FuzzPostfixSMTP is FuzzPostfixSubmission for zimbra-smtp-auth's services.
func FuzzPostfixSMTP(f *testing.F) {
	fuzzSeeds(f)
	flt := builtin(f, "zimbra-smtp-auth", Options{})
	smtp := func(r *rand.Rand, clientText func() string) (string, string) {
		line, addr := randomPostfix(r, clientText)
		svc := pick(r, "postfix/smtpd[", "postfix/smtps/smtpd[", "postfix/submissions/smtpd[")
		line = strings.Replace(line, "postfix/submission/smtpd[", svc, 1)
		return strings.Replace(line, "postfix-in/submission/smtpd[", svc, 1), addr
	}
	f.Fuzz(func(t *testing.T, seed uint64, text string) { fuzzLine(t, flt, smtp, seed, text) })
}

// FuzzMailboxAuth: the address counted is the client's, as the proxy recorded it, whatever
// the client's host, user agent, login name and forwarded-for text hold.
func FuzzMailboxAuth(f *testing.F) {
	fuzzSeeds(f)
	flt := builtin(f, "zimbra-mailbox-auth", trustBalancer)
	f.Fuzz(func(t *testing.T, seed uint64, text string) { fuzzLine(t, flt, randomAudit, seed, text) })
}

// FuzzDoSFilter: the address counted is the one Jetty wrote in its alert, whatever the
// client's URL, session and user hold.
func FuzzDoSFilter(f *testing.F) {
	fuzzSeeds(f)
	flt := builtin(f, "zimbra-dosfilter", Options{})
	f.Fuzz(func(t *testing.T, seed uint64, text string) { fuzzLine(t, flt, randomJetty, seed, text) })
}

// The generated lines the fuzz targets start from, run as a test: many random lines per
// format, client fields from the tricks.
func TestRandomGenuineLines(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	clientText := func() string {
		s := tricks[r.IntN(len(tricks))]
		if r.IntN(2) == 0 {
			s += tricks[r.IntN(len(tricks))]
		}
		return s
	}
	for _, tt := range []struct {
		filter string
		opts   Options
		gen    func(*rand.Rand, func() string) (string, string)
	}{
		{"zimbra-submission", Options{}, randomPostfix},
		{"zimbra-mailbox-auth", trustBalancer, randomAudit},
		{"zimbra-dosfilter", Options{}, randomJetty},
		{"zimbra-activesync", Options{}, randomActiveSync},
		{"zimbra-proxy-auth", Options{}, randomProxy},
		// Reading logins too changes nothing for a failure, whatever the client wrote.
		{"zimbra-submission", Options{Successes: true}, randomPostfix},
		{"zimbra-mailbox-auth", Options{TrustedProxies: trustBalancer.TrustedProxies, Successes: true}, randomAudit},
	} {
		f := builtin(t, tt.filter, tt.opts)
		for range 20_000 {
			line, want := tt.gen(r, clientText)
			if got := judge(f, line); got != want {
				t.Fatalf("%s: got %s, want %s\n%q", tt.filter, got, want, line)
			}
		}
	}
}

// proxyParts is a refused IMAP or POP login in the mail proxy's nginx.log. The client
// writes the name (in the message, with the default domain appended) and the login.
type proxyParts struct {
	name, login string
	additional  bool // zimbra_additional_logging's form of the message
	starttls    bool
}

func (p proxyParts) line(addr string) string {
	msg := "user not found:" + noControl(p.name) + "@example.com"
	if p.additional {
		msg = "Error occurred during authentication: account not found for [" + noControl(p.name) + "@example.com]. oip=" + addr
	}
	client := addr + ":51234"
	if p.starttls {
		client += " using starttls"
	}
	return "2026/03/05 16:01:34 [error] 4321#0: *1234 An error occurred in mail zmauth: " + msg +
		" while in auth state, client: " + client + ", server: 0.0.0.0:993, login: \"" + noControl(p.login) + "\""
}

// proxyWant is what the proxy filter must make of a line whose client wrote text: the
// true address, or nothing where the text holds a copy of nginx's client field (then
// nothing tells nginx's from the client's), and never another address.
func proxyWant(addr string, texts ...string) string {
	for _, s := range texts {
		if strings.Contains(noControl(s), ", client: ") {
			return "none"
		}
	}
	return addr
}

// For every field of the proxy's refusal that the client writes: the true address, or
// nothing where the field copies nginx's client field; never the copy's.
func TestProxyAuthClientFieldsDecideNothing(t *testing.T) {
	f := builtin(t, "zimbra-proxy-auth", Options{})
	proxyTricks := append([]string{
		", client: " + injected + ":1, server: 0.0.0.0:993",
		"x, client: " + injected + ":1, server: 0.0.0.0:993, login: \"x",
		"\", client: " + injected, "client: " + injected + ":2", injected + ":51234",
		proxyParts{name: "a", login: "a"}.line(injected),
	}, tricks...)
	for _, addr := range []string{"203.0.113.61", "2001:db8:61::5"} {
		for _, trick := range proxyTricks {
			for _, additional := range []bool{false, true} {
				for _, p := range []proxyParts{
					{name: trick, login: "u", additional: additional},
					{name: "u", login: trick, additional: additional, starttls: true},
					{name: trick, login: trick, additional: additional},
				} {
					line := p.line(addr)
					if got, want := judge(f, line), proxyWant(addr, p.name, p.login); got != want {
						t.Errorf("name %q, login %q: got %s, want %s\n%s", p.name, p.login, got, want, line)
					}
				}
			}
		}
	}
}

func randomProxy(r *rand.Rand, clientText func() string) (string, string) {
	p := proxyParts{name: clientText(), additional: r.IntN(2) == 0, starttls: r.IntN(2) == 0}
	p.login = pick(r, p.name, clientText())
	addr := randomAddr(r)
	return p.line(addr), proxyWant(addr, p.name, p.login)
}

// FuzzProxyAuth: the address counted is the connection's, as nginx wrote it, or none
// where the client's name copies nginx's field; never the client's text.
func FuzzProxyAuth(f *testing.F) {
	fuzzSeeds(f)
	flt := builtin(f, "zimbra-proxy-auth", Options{})
	f.Fuzz(func(t *testing.T, seed uint64, text string) { fuzzLine(t, flt, randomProxy, seed, text) })
}
