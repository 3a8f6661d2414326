package filters

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// regexpOnly compiles source without its native matcher.
func regexpOnly(t testing.TB, source string) *Pattern {
	p, err := CompilePattern(source)
	if err != nil {
		t.Fatal(err)
	}
	p.native = nil
	return p
}

// choosers returns pick, which returns mostly its first choice (so that many lines are
// well formed but for a part) and otherwise any, and addr, which picks an address,
// well formed or not.
func choosers(r *rand.Rand) (pick func(...string) string, addr func() string) {
	pick = func(xs ...string) string {
		if r.IntN(5) != 0 {
			return xs[0]
		}
		return xs[r.IntN(len(xs))]
	}
	addr = func() string {
		return pick("203.0.113.7", "2001:db8::5", "::ffff:198.51.100.1", "0:0:0:0:0:0:0:1", "fe80::1%eth0",
			"999.1.1.1", "1.2.3", "abcd", "12345::1", "", "1.2.3.4x", "::", "2001:DB8::A", "1.2.3.4.5", "::1.2.3.4")
	}
	return pick, addr
}

// postfixLine makes a zimbra.log-like Postfix line from random parts, well formed or not,
// with the programs and shapes a SASL failure line may have, and text a client controls
// (the client name, a user name) where it may stand.
func postfixLine(r *rand.Rand) string {
	pick, addr := choosers(r)
	var b strings.Builder
	b.WriteString(pick("Mar  5 16:01:34", "Mar 15 16:01:34", "2026-03-05T16:01:37.123456+01:00", "2026-03-05T16:01:37Z",
		"2026-03-05T16:01:37", "2026-03-05T16:01:37+0100", "mar  5 16:01:34", "Mar  5 16:01", "Mar x5 16:01:34", "2026-03-05T+01:00"))
	b.WriteString(pick(" ", "  ", "\t", ""))
	b.WriteString(pick("mta1", "mta1.example.com", "", "m\tx"))
	b.WriteString(pick(" ", "  ", ""))
	b.WriteString(pick("postfix/submission/smtpd", "postfix/smtpd", "postfix/smtps/smtpd", "postfix/smtps/smtps/smtpd", "postfix/qmgr", "postfix/submission/smtpd "))
	b.WriteString(pick("[10686]", "[]", "[1x]", "10686]", "[10686"))
	b.WriteString(pick(": warning: ", ": 0A1B2C3D4E: client=", ": warning:", ":  warning: "))
	b.WriteString(pick("unknown", "host-7.example.net", "", "a[b", "x y", "sasl_username=warning: unknown"))
	b.WriteString(pick("[", "", "[["))
	b.WriteString(addr())
	b.WriteString(pick("]", "", "]]"))
	b.WriteString(pick("", ":50123", ":", ":x", ":5:6"))
	b.WriteString(pick(": SASL ", ": SASL", ":  SASL ", ": sasl "))
	b.WriteString(pick("LOGIN", "PLAIN", "CRAM-MD5", "DIGEST-MD5", "", "login", "LOG IN"))
	b.WriteString(pick(" authentication failed: authentication failure", " authentication failed", " authentication failure",
		" authentication failed: Connection lost to authentication server", "  authentication failed"))
	return b.String()
}

// auditLine makes a mailbox.log-like line from random parts, well formed or not: the
// fields, values, addresses and messages a native matcher must judge as its regexp does,
// including a user agent that carries ";oip=...;" and brackets in the thread name.
func auditLine(r *rand.Rand) string {
	pick, addr := choosers(r)
	var b strings.Builder
	b.WriteString(pick("2026-03-05 16:01:34,123", "2026-03-05 16:01:34.123", "2026-3-05 16:01:34,123", "2026-03-05 16:01:34,12"))
	b.WriteString(pick(" ", "  ", "", "\t"))
	b.WriteString(pick("WARN", "INFO", "warn", "", "W4RN"))
	b.WriteString(pick(" ", "  ", "", " \t"))
	b.WriteString(pick("[qtp1-12:https://m.example.com/service/soap/AuthRequest]", "[ImapServer-7]", "[]", "[a]b]",
		"[x] [y]", "[no close", "[a\tb]", "[https://h/x?ip=6.6.6.6;oip=6.6.6.6;]"))
	b.WriteString(pick(" [", "[", " ", "  ["))
	template := [][]string{{"name", "ip", "oip", "ua"}, {"name", "ip", "port", "ua"}, {"ip", "via", "ua"}, {"oip", "ua", "soapId"}}[r.IntN(4)]
	for k := range r.IntN(len(template) + 1) {
		key := pick(template[k], "name", "aname", "mid", "ip", "port", "oip", "ua", "via", "soapId", "cid", "ds", "dsname",
			"DeviceID", "DeviceType", "Cmd", "Version", "names", "x", "oipx")
		val := pick(addr(), "user@example.com", "", "192.0.2.10", "a=b", "Mozilla/5.0 (X11; Linux)", "v[1]",
			"zclient;oip=6.6.6.6", "x]y", "10.1.0_GA")
		b.WriteString(key + "=" + val + pick(";", ";", ";", "", "]"))
	}
	b.WriteString(pick("]", "] ", "] ", ";] ", "]  ", ""))
	b.WriteString(pick(
		"security - cmd=Auth; account=a@b; protocol=soap; error=authentication failed for [a@b], invalid password;",
		"security - cmd=AdminAuth; account=a@b; error=authentication failed for [a@b], invalid password;",
		"security - cmd=Auth; error=account locked",
		"security - cmd=Auth; x\nerror=authentication failed for [a@b]",
		"security - cmd=Auth;error=authentication failed for [a@b]",
		"SoapEngine - handler exception: authentication failed for [a@b], invalid password",
		"imap - authentication failed for [a@b], invalid password",
		"pop - authentication failed for [a@b]",
		"pop3 - authentication failed for [a@b]",
		"imap - authentication failed for a@b",
		"soap - login ok",
	))
	return b.String()
}

// mutate changes, inserts or drops a byte or two of s.
func mutate(r *rand.Rand, s string) string {
	b := []byte(s)
	for range 1 + r.IntN(2) {
		if len(b) == 0 {
			break
		}
		i := r.IntN(len(b))
		const alphabet = " ;=[]:.\t\nx0aoip"
		c := alphabet[r.IntN(len(alphabet))]
		switch r.IntN(3) {
		case 0:
			b[i] = c
		case 1:
			b = append(b[:i], append([]byte{c}, b[i:]...)...)
		default:
			b = append(b[:i], b[i+1:]...)
		}
	}
	return string(b)
}

// Each native matcher finds, on every line, what its regexp finds: the same lines, the
// same address.
func TestNativeMatchersAgreeWithTheirRegexp(t *testing.T) {
	covered := map[string]bool{}
	for _, tt := range []struct {
		filter string
		line   func(*rand.Rand) string
	}{
		{"zimbra-mailbox-auth", auditLine},
		{"zimbra-submission", postfixLine},
		{"zimbra-smtp-auth", postfixLine},
	} {
		t.Run(tt.filter, func(t *testing.T) {
			samples, err := os.ReadFile(filepath.Join("builtin", "testdata", tt.filter+".log"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(samples), "\n")
			r := rand.New(rand.NewPCG(3, 4))
			for range 100_000 {
				l := tt.line(r)
				lines = append(lines, l, mutate(r, l))
			}
			d, _, _ := Builtin(tt.filter)
			for _, source := range d.FailRegex {
				covered[source] = true
				native := nativeMatchers[source]
				if native == nil {
					t.Fatalf("the built-in failregex has no native matcher (was it edited?): %s", source)
				}
				re := regexpOnly(t, source)
				matched := 0
				for _, l := range lines {
					wa, wok := re.match([]byte(l))
					ga, gok := native([]byte(l))
					if wa != ga || wok != gok {
						t.Fatalf("%q\nregexp: %v %v, native: %v %v\nline: %q", source, wa, wok, ga, gok, l)
					}
					if wok {
						matched++
					}
				}
				if matched < 500 {
					t.Errorf("only %d of %d lines matched: the generator tests too little", matched, len(lines))
				}
			}
		})
	}
	for source := range nativeMatchers {
		if !covered[source] {
			t.Errorf("a native matcher no built-in filter uses, so no test holds it: %s", source)
		}
	}
}

// FuzzNativeMatchers holds each native matcher to its regexp on what the fuzzer makes of
// the samples: go test -fuzz FuzzNativeMatchers ./filters
func FuzzNativeMatchers(f *testing.F) {
	for _, name := range []string{"zimbra-mailbox-auth", "zimbra-submission", "zimbra-smtp-auth"} {
		samples, _ := os.ReadFile(filepath.Join("builtin", "testdata", name+".log"))
		for _, l := range strings.Split(string(samples), "\n") {
			f.Add(l)
		}
	}
	type pair struct {
		re     *Pattern
		native nativeMatcher
	}
	var pairs []pair
	for source, native := range nativeMatchers {
		pairs = append(pairs, pair{regexpOnly(f, source), native})
	}
	f.Fuzz(func(t *testing.T, l string) {
		for _, p := range pairs {
			wa, wok := p.re.match([]byte(l))
			ga, gok := p.native([]byte(l))
			if wa != ga || wok != gok {
				t.Fatalf("%q: regexp %v %v, native %v %v", p.re.source, wa, wok, ga, gok)
			}
		}
	})
}
