package journal

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// entry is what a line is made of, from one entry of journalctl's export format. Its
// byte slices are reused from one entry to the next.
type entry struct {
	cursor            []byte
	realtime          int64 // µs since the epoch; 0: none
	host, ident, comm []byte
	pid, syslogPID    []byte
	message           []byte
	messageCut        bool // the message was longer than the decoder keeps
}

func (e *entry) reset() {
	e.cursor, e.host, e.ident, e.comm = e.cursor[:0], e.host[:0], e.ident[:0], e.comm[:0]
	e.pid, e.syslogPID, e.message = e.pid[:0], e.syslogPID[:0], e.message[:0]
	e.realtime, e.messageCut = 0, false
}

// decoder reads journalctl's export format: each entry a run of fields, "NAME=value\n",
// or "NAME\n" then a 64-bit little-endian length, the value's bytes (any bytes at all)
// and "\n", for values that are binary or hold a newline; an empty line ends an entry.
type decoder struct {
	r        *bufio.Reader
	maxValue int    // the most bytes of a value kept; the rest is read and dropped
	read     int64  // bytes read so far
	long     []byte // a line longer than the reader's buffer, as much as is kept
}

var errFormat = errors.New("not journalctl's export format")

// next reads the next entry into e. It returns io.EOF at the end of the stream between
// entries, and io.ErrUnexpectedEOF inside one.
func (d *decoder) next(e *entry) error {
	e.reset()
	fields := 0
	for {
		line, err := d.r.ReadSlice('\n')
		d.read += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			line, err = d.longLine(line)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 && fields == 0 {
				return io.EOF
			}
			return unexpected(err)
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			if fields == 0 {
				continue // tolerate blank lines between entries
			}
			return nil
		}
		fields++
		if name, value, ok := bytes.Cut(line, []byte{'='}); ok {
			if dst := d.field(e, name); dst != nil {
				*dst = append(*dst, value[:min(len(value), d.maxValue)]...)
				if dst == &e.message && len(value) > d.maxValue {
					e.messageCut = true
				}
			} else if string(name) == "__REALTIME_TIMESTAMP" {
				e.realtime, _ = strconv.ParseInt(string(value), 10, 64)
			}
			continue
		}
		if err := d.binary(e, line); err != nil {
			return err
		}
	}
}

// binary reads the length-prefixed value of the field name.
func (d *decoder) binary(e *entry, name []byte) error {
	dst := d.field(e, name) // name is invalid once the reader reads on
	var size [8]byte
	if _, err := io.ReadFull(d.r, size[:]); err != nil {
		return unexpected(err)
	}
	n := binary.LittleEndian.Uint64(size[:])
	d.read += 8
	if n > 1<<40 {
		return fmt.Errorf("%w: a field of %d bytes", errFormat, n)
	}
	keep := min(int(n), d.maxValue)
	if dst != nil {
		start := len(*dst)
		*dst = slices.Grow(*dst, keep)[:start+keep]
		if _, err := io.ReadFull(d.r, (*dst)[start:]); err != nil {
			return unexpected(err)
		}
		if dst == &e.message && int(n) > keep {
			e.messageCut = true
		}
	} else {
		keep = 0
	}
	if _, err := d.r.Discard(int(n) - keep); err != nil {
		return unexpected(err)
	}
	d.read += int64(n)
	b, err := d.r.ReadByte()
	if err != nil {
		return unexpected(err)
	}
	d.read++
	if b != '\n' {
		return fmt.Errorf("%w: a binary field does not end with a newline", errFormat)
	}
	return nil
}

// longLine reads the rest of a line longer than the reader's buffer, whose start is
// first, and returns as much of it as a field name and the longest value kept take (and
// a little more, so that a cut value shows as longer than that), its newline at the end.
func (d *decoder) longLine(first []byte) ([]byte, error) {
	keep := d.maxValue + 80
	d.long = append(d.long[:0], first[:min(len(first), keep)]...)
	for {
		line, err := d.r.ReadSlice('\n')
		d.read += int64(len(line))
		if room := keep - len(d.long); room > 0 {
			d.long = append(d.long, line[:min(len(line), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, unexpected(err) // a line begun is not the stream's end
		}
		if d.long[len(d.long)-1] != '\n' {
			d.long = append(d.long, '\n')
		}
		return d.long, nil
	}
}

// field returns where the value of the field name goes, or nil for a field a line does
// not use.
func (d *decoder) field(e *entry, name []byte) *[]byte {
	switch string(name) {
	case "MESSAGE":
		return &e.message
	case "__CURSOR":
		return &e.cursor
	case "_HOSTNAME":
		return &e.host
	case "SYSLOG_IDENTIFIER":
		return &e.ident
	case "_COMM":
		return &e.comm
	case "_PID":
		return &e.pid
	case "SYSLOG_PID":
		return &e.syslogPID
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// timeLayout is Debian's rsyslog's default timestamp (RSYSLOG_FileFormat): RFC 3339
// with microseconds and the zone's offset.
const timeLayout = "2006-01-02T15:04:05.000000-07:00"

// appendLine appends to dst the line syslog would have written for e, times in loc:
// "TIME HOST IDENT[PID]: MESSAGE", as journalctl's short output forms it (the identifier
// falls back to _COMM, the PID to SYSLOG_PID). Control characters are written as rsyslog
// does, "#" and three octal digits, so the line is one line whatever an entry holds.
func appendLine(dst []byte, e *entry, loc *time.Location) []byte {
	if e.realtime != 0 {
		dst = time.UnixMicro(e.realtime).In(loc).AppendFormat(dst, timeLayout)
		dst = append(dst, ' ')
	}
	if len(e.host) > 0 {
		dst = appendEscaped(dst, e.host)
		dst = append(dst, ' ')
	}
	ident := e.ident
	if len(ident) == 0 {
		ident = e.comm
	}
	pid := e.pid
	if len(pid) == 0 {
		pid = e.syslogPID
	}
	if len(ident) > 0 {
		dst = appendEscaped(dst, ident)
		if len(pid) > 0 {
			dst = append(dst, '[')
			dst = appendEscaped(dst, pid)
			dst = append(dst, ']')
		}
		dst = append(dst, ':', ' ')
	}
	return appendEscaped(dst, e.message)
}

// appendEscaped appends b with its control characters written as "#ooo".
func appendEscaped(dst, b []byte) []byte {
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] >= 0x20 && b[i] != 0x7f {
			i++
		}
		dst = append(dst, b[:i]...)
		if i == len(b) {
			break
		}
		c := b[i]
		dst = append(dst, '#', '0'+c>>6, '0'+c>>3&7, '0'+c&7)
		b = b[i+1:]
	}
	return dst
}
