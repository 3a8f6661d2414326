package filters

import "bytes"

// shape matches a fixed-width shape at the start of b: in shape, d is a digit, A an
// upper-case letter, a a lower-case one, _ a space or a digit; any other byte stands for
// itself. It returns the shape's length.
func shape(b []byte, shape string) (int, bool) {
	if len(b) < len(shape) {
		return 0, false
	}
	for k := range len(shape) {
		c := b[k]
		var ok bool
		switch shape[k] {
		case 'd':
			ok = isDigit(c)
		case 'A':
			ok = 'A' <= c && c <= 'Z'
		case 'a':
			ok = 'a' <= c && c <= 'z'
		case '_':
			ok = c == ' ' || isDigit(c)
		default:
			ok = c == shape[k]
		}
		if !ok {
			return 0, false
		}
	}
	return len(shape), true
}

// run matches one or more bytes of class at b[i:] and returns the index after them.
func run(b []byte, i int, class func(byte) bool) (int, bool) {
	j := i
	for j < len(b) && class(b[j]) {
		j++
	}
	return j, j > i
}

// field returns b up to the first sep, and what follows sep; ok is false if b holds no sep.
func field(b []byte, sep byte) (before, after []byte, ok bool) {
	i := bytes.IndexByte(b, sep)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// nextSpace returns the index of the first white space in b, or len(b).
func nextSpace(b []byte) int {
	for i, c := range b {
		if isSpace(c) {
			return i
		}
	}
	return len(b)
}

// isSpace is Go regexp's \s: [\t\n\f\r ].
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

// isWord is a byte of a name a server writes: a letter, a digit, '_', '-' or '.'.
func isWord(c byte) bool {
	return isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_' || c == '-' || c == '.'
}
