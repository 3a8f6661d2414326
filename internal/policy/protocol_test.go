package policy

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// A request as Postfix 3.x writes it (SMTPD_POLICY_README, "Protocol description").
const postfixRequest = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
helo_name=some.domain.tld
queue_id=8045F2AB23
sender=foo@bar.tld
recipient=bar@foo.tld
recipient_count=0
client_address=1.2.3.4
client_name=another.domain.tld
reverse_client_name=another.domain.tld
instance=123.456.7
sasl_method=plain
sasl_username=you
sasl_sender=
size=12345
ccert_subject=solaris9.porcupine.org
ccert_issuer=Wietse+20Venema
ccert_fingerprint=C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04
encryption_protocol=TLSv1/SSLv3
encryption_cipher=DHE-RSA-AES256-SHA
encryption_keysize=256
etrn_domain=
stress=
ccert_pubkey_fingerprint=68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40
client_port=1234
policy_context=submission
server_address=10.3.2.1
server_port=54321
compatibility_level=major.minor.patch
mail_version=3.8.0

`

func TestReadRequest(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(postfixRequest + strings.ReplaceAll(postfixRequest, "\n", "\r\n")))
	for i := range 2 {
		req, err := ReadRequest(r)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want := Request{ProtocolState: "RCPT", ClientAddress: "1.2.3.4", SASLUsername: "you", Sender: "foo@bar.tld", Attributes: 31}
		if req != want {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, req, want)
		}
	}
	if _, err := ReadRequest(r); err != io.EOF {
		t.Errorf("after the last request: %v, want io.EOF", err)
	}
}

// Every malformed request is an error: its connection is closed without an answer.
func TestMalformedRequests(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		want       error
	}{
		{"no =", "request=smtpd_access_policy\nclient_address 1.2.3.4\n\n", ErrMalformedLine},
		{"empty name", "=x\n\n", ErrMalformedLine},
		{"empty request", "\n", ErrMalformedLine},
		{"a line too long", "sender=" + strings.Repeat("a", MaxLine) + "\n\n", ErrLineTooLong},
		{"too many attributes", strings.Repeat("x=1\n", MaxAttributes+1) + "\n", ErrTooMany},
		{"half sent: no empty line", "request=smtpd_access_policy\nclient_address=1.2.3.4\n", ErrHalfSent},
		{"half sent: within a line", "request=smtpd_access_policy\nclient_addr", ErrHalfSent},
	} {
		_, err := ReadRequest(NewReader(strings.NewReader(tt.text)))
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// The longest line allowed is read.
	if _, err := ReadRequest(NewReader(strings.NewReader("sender=" + strings.Repeat("a", MaxLine-8) + "\n\n"))); err != nil {
		t.Errorf("a line of MaxLine bytes: %v", err)
	}
}

func TestWriteAnswer(t *testing.T) {
	var b strings.Builder
	if err := WriteAnswer(&b, "DEFER_IF_PERMIT Sending quota exceeded, try later"); err != nil || b.String() != "action=DEFER_IF_PERMIT Sending quota exceeded, try later\n\n" {
		t.Errorf("%q, %v", b.String(), err)
	}
	if err := WriteAnswer(&b, "OK\naction=REJECT"); err == nil {
		t.Error("an answer holding a line break was written")
	}
}

// FuzzReadRequest: any bytes read as requests never panic, and what is read keeps the
// limits; the first request of a well-formed text is read whole.
// go test -fuzz FuzzReadRequest ./internal/policy
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(postfixRequest))
	f.Add([]byte("request=smtpd_access_policy\nclient_address=1.2.3.4\n"))
	f.Add([]byte("x\n\n"))
	f.Add([]byte(strings.Repeat("a=b\n", 300) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(strings.NewReader(string(data)))
		for range 10 {
			req, err := ReadRequest(r)
			if err != nil {
				return
			}
			if req.Attributes < 1 || req.Attributes > MaxAttributes {
				t.Fatalf("%d attributes read", req.Attributes)
			}
		}
	})
}
