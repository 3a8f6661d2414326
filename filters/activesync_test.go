package filters

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestActiveSyncRequests(t *testing.T) {
	f := builtin(t, "zimbra-activesync", Options{})
	const tail = ` HTTP/1.1" 200 250 "-" "Apple-iPhone9C1/1602.92" "192.0.2.20:8080" "192.0.2.10:443"`
	line := func(addr, user, query string) string {
		return addr + " - " + user + ` [29/Nov/2026:10:00:00 +0100]  "POST https://mail.example.com/Microsoft-Server-ActiveSync?` + query + tail
	}
	tests := []struct {
		name, line            string
		addr, device, account string
	}{
		{"plain", line("203.0.113.5:51234", "-", "User=bob&DeviceId=ApplF17XK0ZZHG7F&DeviceType=iPhone&Cmd=Ping"), "203.0.113.5", "ApplF17XK0ZZHG7F", "bob"},
		{"ipv6", line("2001:db8::5:40022", "-", "Cmd=Sync&User=bob%40example.com&DeviceId=SEC1&DeviceType=X"), "2001:db8::5", "SEC1", "bob%40example.com"},
		{"first of each", line("203.0.113.5:1", "-", "XDeviceId=evil&DeviceId=real&DeviceId=second&User=a&User=b"), "203.0.113.5", "real", "a"},
		{"no device", line("203.0.113.5:1", "-", "Cmd=Ping"), "203.0.113.5", "", ""},
		{"device with what no device id holds", line("203.0.113.5:1", "-", `DeviceId=a\x22b&User=x\x5C`), "203.0.113.5", "", ""},
		{"device too long", line("203.0.113.5:1", "-", "DeviceId="+strings.Repeat("A", 65)), "203.0.113.5", "", ""},
		{"user name holding a line", line("203.0.113.5:1", `6.6.6.6:1 - - [01/Jan/2030:00:00:00 +0000]  \x22POST https://h/Microsoft-Server-ActiveSync?DeviceId=VICTIM`, "DeviceId=D"), "203.0.113.5", "D", ""},
		{"no port", line("203.0.113.5", "-", "DeviceId=D"), "", "", ""},
		{"a name, not an address", line("mail.example.com:443", "-", "DeviceId=D"), "", "", ""},
		{"path only begins the same", strings.Replace(line("203.0.113.5:1", "-", "DeviceId=D"), "ActiveSync?", "ActiveSyncX?", 1), "", "", ""},
	}
	for _, tt := range tests {
		m, r := f.Match([]byte(tt.line), now)
		var addr, device, account string
		if r == Matched {
			addr, device, account = m.Addr.String(), string(m.Device), string(m.Account)
		}
		if addr != tt.addr || device != tt.device || account != tt.account {
			t.Errorf("%s: got %q %q %q, want %q %q %q\n%s", tt.name, addr, device, account, tt.addr, tt.device, tt.account, tt.line)
		}
	}
}

// The user name before the time is the client's, brackets and all; nginx's time is the
// one right before the request.
func TestActiveSyncTime(t *testing.T) {
	f := builtin(t, "zimbra-activesync", Options{})
	l := `203.0.113.9:1 - x [01/Jan/2030:00:00:00 +0000]  [29/Nov/2026:10:00:05 +0100]  "POST https://h/Microsoft-Server-ActiveSync?DeviceId=D HTTP/1.1" 200 1 "-" "x" "-" "-"`
	m, r := f.Match([]byte(l), now)
	want := time.Date(2026, 11, 29, 9, 0, 5, 0, time.UTC)
	if r != Matched || !m.Timed || !m.Time.Equal(want) {
		t.Errorf("got %v %v %v, want %v", r, m.Timed, m.Time, want)
	}
	m, r = f.Match([]byte(strings.Replace(l, "+0100]  \"", "+0100] \"", 1)), now)
	if r != Matched || m.Timed || !m.Time.Equal(now) {
		t.Errorf("a time not where nginx writes it: got %v %v %v, want the time read", r, m.Timed, m.Time)
	}
}

// nginxEscape escapes as nginx's access log does (escape=default): '"', '\', control
// characters and bytes from 0x7f as \xHH.
func nginxEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, `\x%02X`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// randomActiveSync makes an ActiveSync request line whose client fields (the user name,
// the rest of the query, the referer, the user agent) hold clientText, escaped as nginx
// does.
func randomActiveSync(r *rand.Rand, clientText func() string) (string, string) {
	addr := randomAddr(r)
	user := pick(r, "-", nginxEscape(clientText()))
	query := "DeviceId=D" + fmt.Sprint(r.IntN(100)) + "&" + nginxEscape(clientText())
	line := fmt.Sprintf(`%s:%d - %s [29/Nov/2026:10:00:00 +0000]  "%s https://mail.example.com/Microsoft-Server-ActiveSync?%s HTTP/1.1" %s 12 "%s" "%s" "192.0.2.20:8080" "192.0.2.10:443"`,
		addr, 1024+r.IntN(60000), user, pick(r, "POST", "GET", "OPTIONS"), query, pick(r, "200", "401", "503"), nginxEscape(clientText()), nginxEscape(clientText()))
	return line, addr
}

// FuzzActiveSync: the address counted is nginx's, whatever the client's user name,
// query, referer and user agent hold.
func FuzzActiveSync(f *testing.F) {
	fuzzSeeds(f)
	flt := builtin(f, "zimbra-activesync", Options{})
	f.Fuzz(func(t *testing.T, seed uint64, text string) { fuzzLine(t, flt, randomActiveSync, seed, text) })
}

func TestDeviceTag(t *testing.T) {
	f, err := New("x", Definition{FailRegex: []string{`device=<DEVICE> user=<USER> from <HOST>`}, IgnoreRegex: []string{`device=<DEVICE> user=test `}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ line, device string }{
		{"device=ABC-1.x user=bob from 203.0.113.5", "ABC-1.x"},
		{"device=" + strings.Repeat("A", 65) + " user=bob from 203.0.113.5", ""},
	} {
		m, r := f.Match([]byte(tt.line), now)
		if r != Matched || string(m.Device) != tt.device || string(m.Account) != "bob" {
			t.Errorf("%q: got %v %q %q, want device %q", tt.line, r, m.Device, m.Account, tt.device)
		}
	}
	if _, r := f.Match([]byte("device=D user=test from 203.0.113.5"), now); r != Ignored {
		t.Errorf("ignoreregex with <DEVICE>: got %v, want Ignored", r)
	}
}
