package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text that clients wrote (matched log lines, account names, a farm node's reason)
// reaches the operator's terminal. Printed raw, an escape sequence in it could rewrite
// the screen, retitle the window or hide a line; a line break could forge a row. Every
// human-readable output goes through escapeWriter, and fields that clients write
// through clean; JSON output stays exact.

// clean returns s with every control character, line breaks and tabs included, and
// every character that reorders text (bidi overrides), written as a Go escape (\x1b,
// \n, \u202e), and bytes that are not UTF-8 as \xNN: one cell, one line.
func clean(s string) string {
	if !needsEscape(s, false) {
		return s
	}
	return escape(s, false)
}

// escapeWriter escapes what clean does, but keeps line breaks and tabs: the output's
// own layout.
type escapeWriter struct{ w io.Writer }

func (e escapeWriter) Write(p []byte) (int, error) {
	s := string(p)
	if !needsEscape(s, true) {
		return e.w.Write(p)
	}
	if _, err := io.WriteString(e.w, escape(s, true)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func needsEscape(s string, keepLayout bool) bool {
	for _, r := range s {
		if unsafeRune(r, keepLayout) {
			return true
		}
	}
	return false
}

// unsafeRune reports whether r must not reach a terminal as it is. utf8.RuneError
// stands for a byte that is not UTF-8 too.
func unsafeRune(r rune, keepLayout bool) bool {
	if keepLayout && (r == '\n' || r == '\t') {
		return false
	}
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) ||
		r == '\u2028' || r == '\u2029' // line and paragraph separators
}

func escape(s string, keepLayout bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unsafeRune(r, keepLayout):
			b.WriteString(s[i : i+size])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}
