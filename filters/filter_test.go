package filters

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 3, 5, 17, 0, 0, 0, time.UTC)

func mustFilter(t testing.TB, fail []string, ignore ...string) *Filter {
	t.Helper()
	f, err := New("test", Definition{FailRegex: fail, IgnoreRegex: ignore}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.SetLocation(time.UTC)
	return f
}

// builtin returns the built-in filter name, with opts.
func builtin(t testing.TB, name string, opts Options) *Filter {
	t.Helper()
	d, ok, err := Builtin(name)
	if !ok || err != nil {
		t.Fatalf("built-in %s: %v %v", name, ok, err)
	}
	f, err := New(name, d, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.SetLocation(time.UTC)
	return f
}

func TestHostForms(t *testing.T) {
	f := mustFilter(t, []string{`client=<HOST> failed`})
	tests := []struct {
		line string
		want string // "" = no failure
	}{
		{"client=203.0.113.5 failed", "203.0.113.5"},
		{"client=2001:db8::1 failed", "2001:db8::1"},
		{"client=::1 failed", "::1"},
		{"client=0:0:0:0:0:0:0:1 failed", "::1"},              // Java writes IPv6 uncompressed
		{"client=::ffff:198.51.100.7 failed", "198.51.100.7"}, // mapped → IPv4
		{"client=2001:DB8:0:0:8:800:200C:417A failed", "2001:db8::8:800:200c:417a"},
		{"client=999.1.1.1 failed", ""},        // not an address
		{"client=mail.example.com failed", ""}, // hostnames never resolve
		{"client=1.2.3 failed", ""},
		{"client=:: failed", "::"},
		{"client=1:2:3:4:5:6:7:8:9 failed", ""},
		{"client=fe80::1%eth0 failed", "fe80::1"}, // counted without its zone
		{"client=fe80:0:0:0:0:0:0:1%2 failed", "fe80::1"},
		{"nothing here", ""},
	}
	// Where the pattern lets the text after the address be anything, a mapped address
	// is still taken whole, never as the IPv6 address its first part spells (::ffff:1).
	loose := mustFilter(t, []string{`FROM <HOST>`})
	for _, line := range []string{"LOGIN REFUSED FROM ::ffff:1.2.3.4", "LOGIN REFUSED FROM ::ffff:1.2.3.4 port 22"} {
		if m, r := loose.Match([]byte(line), now); r != Matched || m.Addr != netip.MustParseAddr("1.2.3.4") {
			t.Errorf("%q: got %v %v, want 1.2.3.4", line, m.Addr, r)
		}
	}
	for _, tt := range tests {
		m, r := f.Match([]byte(tt.line), now)
		if tt.want == "" {
			if r == Matched {
				t.Errorf("%q: matched %v, want no failure", tt.line, m.Addr)
			}
			continue
		}
		if r != Matched || m.Addr != netip.MustParseAddr(tt.want) {
			t.Errorf("%q: got %v %v, want %s", tt.line, m.Addr, r, tt.want)
		}
	}
}

func TestIgnoreRegex(t *testing.T) {
	f := mustFilter(t, []string{`from <HOST>`}, `trusted`)
	if _, r := f.Match([]byte("login failed from 192.0.2.1 (trusted)"), now); r != Ignored {
		t.Errorf("got %v, want Ignored", r)
	}
	if _, r := f.Match([]byte("login failed from 192.0.2.1"), now); r != Matched {
		t.Errorf("got %v, want Matched", r)
	}
}

func TestSeveralHostsFirstCaptureWins(t *testing.T) {
	f := mustFilter(t, []string{`(?:a=<HOST>|b=<HOST>) end`})
	m, r := f.Match([]byte("b=192.0.2.9 end"), now)
	if r != Matched || m.Addr != netip.MustParseAddr("192.0.2.9") {
		t.Fatalf("got %v %v", m.Addr, r)
	}
}

func TestCompileErrors(t *testing.T) {
	_, err := New("x", Definition{FailRegex: []string{`no host here`}}, Options{})
	var pe *PatternError
	if !errors.As(err, &pe) || !errors.Is(err, ErrNoHost) || pe.Index != 0 || pe.Field != "failregex" {
		t.Errorf("no <HOST>: got %v", err)
	}
	_, err = New("x", Definition{FailRegex: []string{`<HOST>`, `(<HOST>`}}, Options{})
	if !errors.As(err, &pe) || pe.Index != 1 {
		t.Errorf("bad regex: got %v", err)
	}
	_, err = New("x", Definition{FailRegex: []string{`<HOST>`}, IgnoreRegex: []string{`[`}}, Options{})
	if !errors.As(err, &pe) || pe.Field != "ignoreregex" {
		t.Errorf("bad ignoreregex: got %v", err)
	}
	if _, err = New("x", Definition{}, Options{}); !errors.Is(err, ErrNoFailRegex) {
		t.Errorf("no failregex: got %v", err)
	}
	if _, err = New("x", Definition{Parser: "postfix-smtp", FailRegex: []string{`<HOST>`}}, Options{}); !errors.Is(err, ErrParserAndRegex) {
		t.Errorf("parser and failregex: got %v", err)
	}
	var ue *UnknownParserError
	if _, err = New("x", Definition{Parser: "nope"}, Options{}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "valid: jetty-dosfilter, nginx-activesync, nginx-mail-auth, postfix-smtp") {
		t.Errorf("unknown parser: got %v", err)
	}
}

func TestLiterals(t *testing.T) {
	tests := []struct {
		fail []string
		want string
	}{
		// the one whose first byte log lines rarely hold: bytes.Index skips a line in one jump
		{[]string{`warning: \S+\[<HOST>\]: SASL \w+ authentication failed`}, "SASL "},
		{[]string{`postfix/submission/smtpd\[\d+\]: warning: \S+\[<HOST>\]`}, "warning: "},
		{[]string{`DOS ALERT.*ip=<HOST>`}, "LERT"},
		{[]string{`DOS ALERT: Request rejected ip=<HOST>,`}, "jected ip="}, // not "quest...": qtp..., Jetty's threads
		{[]string{`(?i:dos alert).*ip=<HOST>`}, "ip="},
		{[]string{`(?i)dos alert.*ip=<HOST>`}, ""},
		{[]string{`(?:foo|bar) <HOST>`}, " "},
		{[]string{`SASL LOGIN authentication failed.*<HOST>`, `SASL PLAIN authentication failed.*<HOST>`}, "SASL "},
		{[]string{`LOGIN failed.*<HOST>`, `PLAIN failed.*<HOST>`}, "N failed"},
		{[]string{`abc <HOST>`, `xyz <HOST>`}, " "},
		{[]string{`(?i)abc <HOST>`, `xyz\[<HOST>`}, ""},
	}
	for _, tt := range tests {
		f := mustFilter(t, tt.fail)
		if got := f.Literal(); got != tt.want {
			t.Errorf("%q: literal %q, want %q", tt.fail, got, tt.want)
		}
	}
}

func TestNonMatchingLinesAllocateNothing(t *testing.T) {
	f := builtin(t, "zimbra-submission", Options{})
	lines := [][]byte{
		[]byte("Mar  5 16:00:00 mta1 postfix/qmgr[123]: 0A1B2C3D4E: from=<a@example.com>, size=1234, nrcpt=1 (queue active)"),
		[]byte("Mar  5 16:00:00 mta1 postfix/submission/smtpd[123]: connect from unknown[192.0.2.1]"),
		// has every literal but does not match
		[]byte("Mar  5 16:00:00 mta1 postfix/submission/smtpd[1]: x: client=unknown[192.0.2.1], sasl_username=warning: x[6.6.6.6]: SASL X authentication failed"),
	}
	for _, line := range lines {
		if n := testing.AllocsPerRun(100, func() { f.Match(line, now) }); n != 0 {
			t.Errorf("%q: %v allocations, want 0", line, n)
		}
	}
	f = builtin(t, "zimbra-activesync", Options{})
	for _, line := range [][]byte{
		[]byte(`203.0.113.5:51234 - - [29/Nov/2026:10:00:00 +0000]  "GET https://mail.example.com/ HTTP/1.1" 200 250 "-" "Mozilla/5.0" "192.0.2.20:8080" "192.0.2.10:443"`),
		// the path in the user agent: the literal is there, the request is not for it
		[]byte(`203.0.113.5:51234 - - [29/Nov/2026:10:00:00 +0000]  "GET https://mail.example.com/ HTTP/1.1" 200 250 "-" "/Microsoft-Server-ActiveSync" "192.0.2.20:8080" "192.0.2.10:443"`),
	} {
		if n := testing.AllocsPerRun(100, func() { f.Match(line, now) }); n != 0 {
			t.Errorf("%q: %v allocations, want 0", line, n)
		}
	}
}

func TestBuiltinPackCompiles(t *testing.T) {
	names := BuiltinNames()
	if len(names) == 0 {
		t.Fatal("no built-in filters")
	}
	for _, n := range names {
		d, ok, err := Builtin(n)
		if !ok || err != nil {
			t.Fatalf("%s: %v %v", n, ok, err)
		}
		if _, err := New(n, d, Options{}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	if _, ok, _ := Builtin("no-such-filter"); ok {
		t.Error("Builtin(no-such-filter) found something")
	}
}

func TestZimbraSubmission(t *testing.T) {
	f := builtin(t, "zimbra-submission", Options{})
	tests := []struct {
		line string
		want string
	}{
		{"Mar  5 16:01:34 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", "203.0.113.5"},
		{"Mar 15 16:01:34 mta1 postfix/submission/smtpd[4242]: warning: host-1.example.net[2001:db8::5]: SASL PLAIN authentication failed: authentication failure", "2001:db8::5"},
		{"Mar  5 16:01:34 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]:41234: SASL CRAM-MD5 authentication failed: bad", "203.0.113.5"},
		{"2026-03-05T16:01:34.123456+01:00 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.6]: SASL LOGIN authentication failed: x", "203.0.113.6"},
		// server-side fault
		{"Mar  5 16:01:34 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: Connection lost to authentication server", ""},
		// injection through a SASL user name on a successful login
		{"Mar  5 16:01:34 mta1 postfix/submission/smtpd[4242]: 0A1B: client=unknown[198.51.100.1], sasl_method=PLAIN, sasl_username=x postfix/submission/smtpd[1]: warning: unknown[6.6.6.6]: SASL LOGIN authentication failed", ""},
		// port 25 is another filter's
		{"Mar  5 16:01:34 mta1 postfix/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: x", ""},
	}
	for _, tt := range tests {
		m, r := f.Match([]byte(tt.line), now)
		got := ""
		if r == Matched {
			got = m.Addr.String()
		}
		if got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.line, got, tt.want)
		}
	}
}

func BenchmarkFilterNoMatch(b *testing.B) {
	f := builtin(b, "zimbra-submission", Options{})
	line := []byte("Mar  5 16:00:00 mta1 postfix/qmgr[123]: 0A1B2C3D4E: from=<a@example.com>, size=1234, nrcpt=1 (queue active)")
	b.ReportAllocs()
	for b.Loop() {
		f.Match(line, now)
	}
}

// BenchmarkFilterNoMatchReadingLogins is BenchmarkFilterNoMatch for a jail that trusts
// logins that worked: the line is searched for their text too.
func BenchmarkFilterNoMatchReadingLogins(b *testing.B) {
	f := builtin(b, "zimbra-submission", Options{Successes: true})
	line := []byte("Mar  5 16:00:00 mta1 postfix/qmgr[123]: 0A1B2C3D4E: from=<a@example.com>, size=1234, nrcpt=1 (queue active)")
	b.ReportAllocs()
	for b.Loop() {
		f.Match(line, now)
	}
}

// BenchmarkFilterActiveSync reads one ActiveSync request: its address, time, device and
// account.
func BenchmarkFilterActiveSync(b *testing.B) {
	f := builtin(b, "zimbra-activesync", Options{})
	line := []byte(`203.0.113.5:51234 - - [29/Nov/2026:10:00:00 +0000]  "POST https://mail.example.com/Microsoft-Server-ActiveSync?User=bob&DeviceId=ApplF17XK0ZZHG7F&DeviceType=iPhone&Cmd=Ping HTTP/1.1" 200 250 "-" "Apple-iPhone9C1/1602.92" "192.0.2.20:8080" "192.0.2.10:443"`)
	b.ReportAllocs()
	for b.Loop() {
		f.Match(line, now)
	}
}

func BenchmarkFilterMatch(b *testing.B) {
	f := builtin(b, "zimbra-submission", Options{})
	line := []byte("Mar  5 16:01:34 mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.113.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
	b.ReportAllocs()
	for b.Loop() {
		f.Match(line, now)
	}
}

// TestBuiltinSamples runs each built-in filter over its annotated samples in
// builtin/testdata (see the README there) and checks every failregex is hit.
func TestBuiltinSamples(t *testing.T) {
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			f := builtin(t, name, Options{TrustedProxies: sampleTrustedProxies})
			data, err := os.ReadFile(filepath.Join("builtin", "testdata", name+".log"))
			if err != nil {
				t.Fatalf("no samples: %v", err)
			}
			hit := make([]bool, len(f.Rules()))
			want, samples := "", 0
			for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if w, ok := strings.CutPrefix(line, "#> "); ok {
					want = w
					continue
				}
				if strings.HasPrefix(line, "#") {
					continue
				}
				if want == "" {
					t.Fatalf("line %d has no #> expectation", i+1)
				}
				samples++
				m, r := f.Match([]byte(line), now)
				got := "none"
				if r == Matched {
					got = m.Addr.String()
					hit[m.Rule] = true
				}
				if got != want {
					t.Errorf("line %d: got %s, want %s:\n%s", i+1, got, want, line)
				}
				want = ""
			}
			for i, h := range hit {
				if !h {
					t.Errorf("rule %d is hit by no sample: %s", i, f.Rules()[i])
				}
			}
			if samples < 5 {
				t.Errorf("only %d samples", samples)
			}
		})
	}
}
