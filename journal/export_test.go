package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func binaryField(name, value string) string {
	var b bytes.Buffer
	b.WriteString(name + "\n")
	binary.Write(&b, binary.LittleEndian, uint64(len(value))) //nolint:errcheck // a bytes.Buffer
	b.WriteString(value + "\n")
	return b.String()
}

func decode(t *testing.T, text string, maxValue int) ([]string, error) {
	t.Helper()
	d := decoder{r: bufio.NewReaderSize(strings.NewReader(text), 16), maxValue: maxValue}
	var lines []string
	var e entry
	for {
		err := d.next(&e)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return lines, err
		}
		lines = append(lines, string(appendLine(nil, &e, time.UTC)))
	}
}

func TestDecoderReadsTheExportFormat(t *testing.T) {
	text := "__CURSOR=s=ab;i=1\n__REALTIME_TIMESTAMP=1796637600000001\n_HOSTNAME=mta1\nSYSLOG_IDENTIFIER=postfix/smtpd\n_PID=12\nMESSAGE=first\n\n" +
		"__CURSOR=s=ab;i=2\n" + binaryField("MESSAGE", "two\nlines\x00") + "_COMM=dovecot\nSYSLOG_PID=7\n\n" +
		"\n" + // a blank line between entries is no entry
		"__CURSOR=s=ab;i=3\nMESSAGE=" + strings.Repeat("x", 100) + "\nSYSLOG_IDENTIFIER=" + strings.Repeat("y", 40) + "\n\n"
	got, err := decode(t, text, 32)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"2026-12-07T10:00:00.000001+00:00 mta1 postfix/smtpd[12]: first",
		"dovecot[7]: two#012lines#000",
		strings.Repeat("y", 32) + ": " + strings.Repeat("x", 32),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n got %q\nwant %q", got, want)
	}
}

func TestDecoderRefusesWhatIsNotExportFormat(t *testing.T) {
	for _, text := range []string{
		"MESSAGE=cut short",                           // no end of entry
		"MESSAGE\n\x05\x00\x00\x00\x00\x00\x00\x00ab", // a binary value cut short
		"MESSAGE\n\x02\x00\x00\x00\x00\x00\x00\x00abX\n\n",
		"MESSAGE\n\xff\xff\xff\xff\xff\xff\xff\xff",
	} {
		if _, err := decode(t, text, 64); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte("__CURSOR=s=ab;i=1\nMESSAGE=x\n\n"), 8)
	f.Add([]byte(binaryField("MESSAGE", "a\nb")+"\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, maxValue int) {
		maxValue = 1 + abs(maxValue)%256
		d := decoder{r: bufio.NewReaderSize(bytes.NewReader(data), 16), maxValue: maxValue}
		var e entry
		for d.next(&e) == nil {
			line := appendLine(nil, &e, time.UTC)
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("a line holds a newline: %q", line)
			}
			if len(e.message) > maxValue {
				t.Fatalf("kept %d bytes of a message, more than %d", len(e.message), maxValue)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestCheckMatches(t *testing.T) {
	for _, tc := range []struct {
		matches []string
		err     string
	}{
		{[]string{"_SYSTEMD_UNIT=postfix@-.service"}, ""},
		{[]string{"_SYSTEMD_UNIT=postfix@-.service", "SYSLOG_IDENTIFIER=postfix/smtpd", "+", "_COMM=dovecot"}, ""},
		{nil, "no match"},
		{[]string{"SYSLOG_IDENTIFIER=postfix/submission/smtpd"}, "no field journald sets itself"},
		{[]string{"_SYSTEMD_UNIT=postfix@-.service", "+", "SYSLOG_IDENTIFIER=sshd"}, "SYSLOG_IDENTIFIER=sshd: no field journald sets itself"},
		{[]string{"__CURSOR=x"}, "no field journald sets itself"},
		{[]string{"--directory=/tmp"}, "is not FIELD=value"},
		{[]string{"_systemd_unit=x"}, "is not FIELD=value"},
		{[]string{"/usr/sbin/postfix"}, "is not FIELD=value"},
		{[]string{"+", "_COMM=x"}, "stands between two groups"},
		{[]string{"_COMM=x", "+"}, "stands between two groups"},
		{[]string{"_COMM=x", "+", "+", "_COMM=y"}, "stands between two groups"},
	} {
		err := CheckMatches(tc.matches)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckMatches(%q) = %v, want %q", tc.matches, err, tc.err)
		}
	}
}

func TestCursorSeq(t *testing.T) {
	a, n := cursorSeq([]byte("s=11b4991fdfbe4e3d9bb562d88a29e47b;i=1f;b=0123;m=1;t=6620;x=59ad"))
	b, _ := cursorSeq([]byte("s=c0632ccf45ad4f88a4c02f6d5e0d57ab;i=1f;b=0123;m=1;t=6620;x=59ad"))
	if n != 31 || a == b || a == 0 {
		t.Errorf("cursorSeq: %x %d and %x: want seqnum 31 and two sequence IDs apart", a, n, b)
	}
}
