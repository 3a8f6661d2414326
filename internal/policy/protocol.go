// Package policy is ban-server's Postfix policy delegation service (Postfix's
// SMTPD_POLICY_README): Postfix asks, per SMTP stage it is wired into, what to do with
// a client, and the service answers from what the daemon knows. A client banned in any
// jail is refused; quotas count messages and recipients per sender, account or
// address; an account logging in from too many addresses is flagged. It only reads the
// ban decisions (the daemon's), and answers DUNNO, Postfix's "go on", whenever it
// cannot decide: a mail server must not stop on its policy service's account.
//
// The protocol (protocol.go) is small and written here, for no well-kept Go library
// speaks it: name=value lines ended by an empty line, one action=... line and an empty
// line back, the connection kept for the next request. A malformed request closes the
// connection without an answer, as the protocol asks.
package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on a request, past which it is malformed and its connection closed. Postfix
// 3.x sends about 35 attributes, the longest a certificate's subject or a sender.
const (
	MaxLine       = 4096
	MaxAttributes = 256
)

// Errors of reading a request; each closes the connection.
var (
	ErrLineTooLong   = errors.New("policy request: a line longer than MaxLine")
	ErrTooMany       = errors.New("policy request: more than MaxAttributes attributes")
	ErrMalformedLine = errors.New("policy request: a line that is not name=value")
	ErrHalfSent      = errors.New("policy request: the connection ended within a request")
)

// Request is one policy request: the attributes logban decides by, and how many there
// were. Any other attribute is read and set aside.
type Request struct {
	ProtocolState  string // CONNECT, EHLO, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY, ETRN
	ClientAddress  string
	SASLUsername   string
	Sender         string
	RecipientCount int
	Attributes     int
}

// Get returns the attribute a quota is keyed by: sasl_username, sender or
// client_address.
func (r *Request) Get(name string) string {
	switch name {
	case "sasl_username":
		return r.SASLUsername
	case "sender":
		return r.Sender
	case "client_address":
		return r.ClientAddress
	}
	return ""
}

// ReadRequest reads one request from r. It returns io.EOF if the connection ended
// between requests (Postfix closed it), and an error, after which the connection must
// be closed, for anything else that is not a whole request.
func ReadRequest(r *bufio.Reader) (Request, error) {
	var req Request
	for first := true; ; first = false {
		line, err := readLine(r)
		if err != nil {
			if err == io.EOF && first {
				return Request{}, io.EOF
			}
			if err == io.EOF {
				return Request{}, ErrHalfSent
			}
			return Request{}, err
		}
		if len(line) == 0 {
			if first {
				return Request{}, ErrMalformedLine // an empty request
			}
			return req, nil
		}
		name, value, ok := bytes.Cut(line, []byte("="))
		if !ok || len(name) == 0 {
			return Request{}, ErrMalformedLine
		}
		if req.Attributes++; req.Attributes > MaxAttributes {
			return Request{}, ErrTooMany
		}
		switch string(name) {
		case "protocol_state":
			req.ProtocolState = intern(value, protocolStates)
		case "client_address":
			req.ClientAddress = string(value)
		case "sasl_username":
			req.SASLUsername = string(value)
		case "sender":
			req.Sender = string(value)
		case "recipient_count":
			req.RecipientCount, _ = strconv.Atoi(string(value))
		}
	}
}

// protocolStates are the values of protocol_state, kept without a copy each.
var protocolStates = []string{"CONNECT", "EHLO", "HELO", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN"}

// intern returns the string of known equal to b, or a copy of b.
func intern(b []byte, known []string) string {
	for _, k := range known {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

// readLine reads one line, without its newline (and a CR before it).
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, ErrLineTooLong
	case err == io.EOF && len(line) > 0:
		return nil, ErrHalfSent
	case err != nil:
		return nil, err
	}
	if len(line) > MaxLine {
		return nil, ErrLineTooLong
	}
	line = line[:len(line)-1]
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// NewReader returns a reader for a policy connection, whose buffer bounds a line.
func NewReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, MaxLine+2) }

// WriteAnswer writes the answer to one request: "action=ACTION" and an empty line, in
// three writes (give it a buffered writer). ACTION must hold no line break.
func WriteAnswer(w io.Writer, action string) error {
	if strings.ContainsAny(action, "\r\n") {
		return fmt.Errorf("policy answer %q holds a line break", action)
	}
	if _, err := io.WriteString(w, "action="); err != nil {
		return err
	}
	if _, err := io.WriteString(w, action); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n\n")
	return err
}
