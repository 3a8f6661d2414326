package filters

import (
	"bytes"
	"net/netip"
	"time"
)

// activeSyncLiteral is in every line activeSync counts: the path of Exchange ActiveSync,
// which Zimbra and Carbonio serve for mobile devices.
const activeSyncLiteral = "/Microsoft-Server-ActiveSync"

// The kinds of request activeSync counts, in the order of their kind index.
var activeSyncKinds = []string{
	`ADDR:PORT - USER [TIME]  "METHOD SCHEME://HOST/Microsoft-Server-ActiveSync?...DeviceId=ID..." ...`,
}

// maxDeviceLen is the longest device id read. ActiveSync's are at most 32 characters
// ([MS-ASHTTP] 2.2.1.1.1.1.3); longer text is no device id.
const maxDeviceLen = 64

// maxAccountLen is the longest account name a request's User= parameter gives.
const maxAccountLen = 256

// activeSync reads the requests of mobile devices to Exchange ActiveSync in the access
// log of Zimbra's and Carbonio's proxy (nginx.access.log), which their nginx templates
// (nginx.conf.web.template, log_format upstream) lay out as
//
//	$remote_addr:$remote_port - $remote_user [$time_local]  "$request_method $scheme://$host$request_uri $server_protocol" $status $bytes_sent "$http_referer" "$http_user_agent" "$upstream_addr" "$server_addr:$server_port"
//
// for instance
//
//	203.0.113.5:51234 - - [29/Nov/2026:10:00:00 +0000]  "POST https://mail.example.com/Microsoft-Server-ActiveSync?User=bob&DeviceId=ABC123&DeviceType=iPhone&Cmd=Ping HTTP/1.1" 200 250 "-" "Apple-iPhone9C1/1602.92" "192.0.2.20:8080" "192.0.2.10:443"
//
// The address is nginx's, at the start of the line; everything the client wrote comes
// after it, and nginx escapes '"' in every field, so the request is the first quoted
// field. Every such request counts (a rate jail counts requests); the device id and the
// account are the query's DeviceId= and User= parameters, each the first of its name.
func activeSync(line []byte) (netip.Addr, int, Result) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return netip.Addr{}, 0, NoMatch
	}
	if _, ok := activeSyncQuery(line); !ok { // first: a line of another request allocates nothing
		return netip.Addr{}, 0, NoMatch
	}
	addr, ok := addrBeforePort(line[:sp])
	if !ok {
		return netip.Addr{}, 0, NoMatch
	}
	return addr, 0, Matched
}

// addrBeforePort reads nginx's $remote_addr:$remote_port: the port is the digits after
// the last ':', and what comes before it the address (an IPv6 address is not bracketed).
func addrBeforePort(b []byte) (netip.Addr, bool) {
	i := bytes.LastIndexByte(b, ':')
	if i < 0 {
		return netip.Addr{}, false
	}
	if end, ok := run(b, i+1, isDigit); !ok || end != len(b) {
		return netip.Addr{}, false
	}
	return ParseAddr(b[:i])
}

// activeSyncQuery returns the query of the request, the first quoted field, if it asks
// for ActiveSync's path: "METHOD SCHEME://HOST/Microsoft-Server-ActiveSync?QUERY ...".
// nginx refuses a Host holding '/', so the path begins at the first '/' after "://".
func activeSyncQuery(line []byte) ([]byte, bool) {
	q := bytes.IndexByte(line, '"')
	if q < 0 {
		return nil, false
	}
	req := line[q+1:]
	if end := bytes.IndexByte(req, '"'); end >= 0 {
		req = req[:end]
	}
	m, ok := run(req, 0, isUpper)
	if !ok || m >= len(req) || req[m] != ' ' {
		return nil, false
	}
	rest := req[m+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("https://")):
		rest = rest[len("https://"):]
	case bytes.HasPrefix(rest, []byte("http://")):
		rest = rest[len("http://"):]
	default:
		return nil, false
	}
	slash := bytes.IndexByte(rest, '/')
	if slash < 0 {
		return nil, false
	}
	path, ok := bytes.CutPrefix(rest[slash:], []byte(activeSyncLiteral))
	if !ok || len(path) == 0 || path[0] != '?' {
		return nil, false
	}
	query := path[1:]
	if sp := bytes.IndexByte(query, ' '); sp >= 0 {
		query = query[:sp]
	}
	return query, true
}

// queryParam returns the value of the first parameter name in query, as written
// (percent-encoded).
func queryParam(query []byte, name string) []byte {
	for len(query) > 0 {
		var pair []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			pair, query = query, nil
		}
		if v, ok := bytes.CutPrefix(pair, []byte(name)); ok && len(v) > 0 && v[0] == '=' {
			return v[1:]
		}
	}
	return nil
}

// activeSyncDevice reads the DeviceId= of a request activeSync counted: letters, digits,
// '-', '_' and '.', at most maxDeviceLen of them; anything else is no device id.
func activeSyncDevice(line []byte) []byte {
	q, _ := activeSyncQuery(line)
	id := queryParam(q, "DeviceId")
	if len(id) == 0 || len(id) > maxDeviceLen {
		return nil
	}
	if end, _ := run(id, 0, isWord); end != len(id) {
		return nil
	}
	return id
}

// activeSyncAccount reads the User= of a request activeSync counted, as the client
// wrote it (percent-encoded: bob%40example.com); nil if it holds what no account name
// does.
func activeSyncAccount(line []byte) []byte {
	q, _ := activeSyncQuery(line)
	u := queryParam(q, "User")
	if len(u) == 0 || len(u) > maxAccountLen {
		return nil
	}
	for _, c := range u {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return nil
		}
	}
	return u
}

// nginxTime reads nginx's $time_local, which stands right before the request:
// "[29/Nov/2026:10:00:00 +0000]  \"". The user name before it is the client's and may
// hold brackets, but never '"', so the time is found back from the first '"'.
func nginxTime(line []byte) (time.Time, bool) {
	const stamp = "dd/Aaa/dddd:dd:dd:dd +dddd"
	q := bytes.IndexByte(line, '"')
	start := q - len(`]  `) - len(stamp)
	if q < 0 || start < 1 || line[start-1] != '[' || string(line[q-3:q]) != "]  " {
		return time.Time{}, false
	}
	if _, ok := shape(line[start:], stamp); !ok {
		if _, ok := shape(line[start:], "dd/Aaa/dddd:dd:dd:dd -dddd"); !ok {
			return time.Time{}, false
		}
	}
	t, err := time.Parse("02/Jan/2006:15:04:05 -0700", string(line[start:start+len(stamp)]))
	return t, err == nil
}
