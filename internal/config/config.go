// Package config loads ban-server's TOML configuration: the main file, then the drop-ins
// in jail.d/*.toml beside it, in name order. Everything is checked before a daemon is
// built from it: unknown keys, types, durations, prefixes, regexes, and every name one
// section gives another. An error names the file, the key path (jails.sasl.findtime) and,
// where the parser knows it, the line; where there is a set of valid choices, it lists
// them.
//
// This package only reads and checks; it builds no daemon and touches nothing.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/filters"
	"github.com/logban/logban/jails"
	"github.com/logban/logban/journal"
	"github.com/logban/logban/watcher"
)

// Defaults for what a configuration leaves out.
const (
	DefaultSocket   = "/run/logban/logban.sock"
	DefaultDatabase = "/var/lib/logban/logban.db"
	DefaultMaxRetry = 5
	DefaultFindTime = 10 * time.Minute
	DefaultBanTime  = 10 * time.Minute
	// DefaultMaxLineBytes is the longest log line read whole.
	DefaultMaxLineBytes = 64 << 10
	// DefaultReconcileInterval is how often kernel actions are checked against the bans
	// in force.
	DefaultReconcileInterval = 5 * time.Minute
)

// Config is a loaded, checked configuration.
type Config struct {
	// Files are the files read, the main one first.
	Files   []string
	Server  Server
	Filters map[string]Filter // every filter a jail uses, built-in ones included
	Actions map[string]Action
	Jails   map[string]Jail // enabled jails only
	// Farm is the [farm] table; nil without one.
	Farm *Farm
	// Policy is the [policy] table; nil without one.
	Policy *Policy
	// Zimbra ([zimbra]) keeps the farm's servers, trusted proxies and DoSFilter-safe
	// addresses never banned, as the Zimbra or Carbonio directory lists them. Nil
	// without the table.
	Zimbra *Zimbra
	// Origins says where each enabled jail's keys come from, by key path
	// ("jails.sasl.maxretry"): the file that sets it, "FILE [defaults]", or "default".
	Origins map[string]string
}

// Server is the [server] table.
type Server struct {
	Socket string
	// SocketGID is the control socket's group, whose members may use ban-client (mode
	// 0660); -1 for none (0600, root only).
	SocketGID int
	Database  string
	IgnoreIP  []netip.Prefix
	// TrustedProxies are the farm's proxies and the load balancers in front of them: never
	// banned, and stepped over from the right in a forwarded-for list (filters.Options).
	TrustedProxies []netip.Prefix
	LogLevel       slog.Level
	// MaxLineBytes cuts longer log lines (the rest is discarded, counted and reported).
	MaxLineBytes int
	// Metrics is the host:port Prometheus metrics are served on; "" for none.
	Metrics string
	// ReconcileInterval is how often kernel actions are compared with the bans in force
	// and repaired; 0 only at start.
	ReconcileInterval time.Duration
}

// Filter is a checked filter definition; Compile builds a matcher from it.
type Filter struct {
	Name       string
	Builtin    bool
	Definition filters.Definition
}

// Compile returns a new matcher for the filter, for a jail whose proxies are trusted.
func (f Filter) Compile(trusted []netip.Prefix) (*filters.Filter, error) {
	return f.CompileFor(filters.Options{TrustedProxies: trusted})
}

// CompileFor returns a new matcher for the filter with opts.
func (f Filter) CompileFor(opts filters.Options) (*filters.Filter, error) {
	return filters.New(f.Name, f.Definition, opts)
}

// Action is an [actions.NAME] table: its kind and that kind's decoded options.
type Action struct {
	Name    string
	Type    string
	Options any // a pointer made by the kind's Options
}

// Equal reports whether a and b configure the same action.
func (a Action) Equal(b Action) bool { return reflect.DeepEqual(a, b) }

// Jail is a [jails.NAME] table with defaults filled in.
type Jail struct {
	Name    string
	Filter  string
	LogPath []string // absolute
	// Backend is where the jail reads: BackendFile (its LogPath) or BackendJournal (the
	// systemd journal's entries that JournalMatch selects, in JournalDirectory, "" for
	// the system journal).
	Backend          string
	JournalMatch     []string
	JournalDirectory string // absolute
	MaxRetry         int
	FindTime         time.Duration
	BanTime          time.Duration // < 0: until unbanned
	IgnoreIP         []netip.Prefix
	// TrustedProxies are added to the server's for this jail (see Server.TrustedProxies).
	TrustedProxies []netip.Prefix
	// TimeZone is the zone of the timestamps of the jail's logs that carry none, as
	// written (see ParseTimeZone); "" is the host's.
	TimeZone string
	Actions  []string
	Start    string // "resume", "end" or "beginning"
	// Increment ([jails.NAME.bantime_increment]) lengthens the bans of repeat offenders.
	Increment jails.Increment
	// Farm is what the jail shares with the farm: FarmCount, FarmBans or FarmLocal.
	Farm string
	// Subnet ([jails.NAME.subnet]) bans a network when enough of its addresses fail;
	// SubnetBanTime is how long (< 0: until unbanned). Off without the table.
	Subnet        jails.Subnet
	SubnetBanTime time.Duration
	// Mode is what the jail counts: ModeFailures (its filter's lines are failures) or
	// ModeRate (they are requests, and too many too fast is what is banned).
	Mode string
	// Key is what lines are counted by: jails.KeyAddress, jails.KeyUser or
	// jails.KeyDevice.
	Key string
	// BanAddresses, in a jail keyed by user or device, bans the addresses seen with a
	// key at its ban too (default: true keyed by user, false by device).
	BanAddresses bool
	// TrustTime is how long a login that worked makes its address trusted for its
	// account; 0: the jail trusts none (and reads no successes).
	TrustTime time.Duration
	// Notify are the actions told of what is no ban (a failure of a trusted address):
	// log, mail, webhook or exec actions.
	Notify []string
	// MaxTracked bounds each of the jail's tables (addresses, networks, keys with
	// failures within findtime); past it, those with the fewest failures go.
	MaxTracked int
}

// DefaultTrustTime is how long a login that worked makes its address trusted for its
// account, unless a jail says otherwise.
const DefaultTrustTime = 30 * 24 * time.Hour

var keyChoices = []string{jails.KeyAddress, jails.KeyUser, jails.KeyDevice}

// What a jail counts.
const (
	// ModeFailures counts the filter's lines as failures (the default).
	ModeFailures = "failures"
	// ModeRate counts them as requests: a rate, whatever their outcome. Logins that
	// worked excuse none, and there is no subnet escalation.
	ModeRate = "rate"
)

var modeChoices = []string{ModeFailures, ModeRate}

// Equal reports whether a and b are the same jail.
func (j Jail) Equal(o Jail) bool { return reflect.DeepEqual(j, o) }

// Where a jail reads its lines.
const (
	// BackendFile reads the jail's logpath (the default).
	BackendFile = "file"
	// BackendJournal reads the systemd journal.
	BackendJournal = "journal"
)

// Where a jail starts reading its files.
const (
	// StartResume continues where the last run stopped (and from the end the first time).
	StartResume = "resume"
	// StartEnd reads only lines written from now on.
	StartEnd = "end"
	// StartBeginning reads each file whole first.
	StartBeginning = "beginning"
)

var startChoices = []string{StartResume, StartEnd, StartBeginning}

var levelChoices = []string{"debug", "info", "warn", "error"}

// The shapes of a file, as decoded. Pointers tell a key that is absent from one that is
// set, so a drop-in changes only the keys it names.
type fileData struct {
	Server  serverData                    `toml:"server"`
	Filters map[string]filters.Definition `toml:"filters"`
	Actions map[string]toml.Primitive     `toml:"actions"`
	Jails   map[string]jailData           `toml:"jails"`
	Farm    *farmData                     `toml:"farm"`
	Policy  *policyData                   `toml:"policy"`
	Zimbra  *zimbraData                   `toml:"zimbra"`
	// Defaults are keys every jail takes unless it sets its own (fail2ban's [DEFAULT]).
	Defaults *jailData `toml:"defaults"`
}

type serverData struct {
	Socket         *string   `toml:"socket"`
	SocketGroup    *string   `toml:"socket_group"`
	Database       *string   `toml:"database"`
	IgnoreIP       *[]Prefix `toml:"ignoreip"`
	TrustedProxies *[]Prefix `toml:"trusted_proxies"`
	TimeZone       *string   `toml:"timezone"`
	LogLevel       *string   `toml:"loglevel"`
	MaxLineBytes   *int      `toml:"max_line_bytes"`
	Metrics        *string   `toml:"metrics"`

	ReconcileInterval *Duration `toml:"reconcile_interval"`
}

type jailData struct {
	Enabled  *bool     `toml:"enabled"`
	Filter   *string   `toml:"filter"`
	LogPath  *[]string `toml:"logpath"`
	MaxRetry *int      `toml:"maxretry"`

	Backend          *string   `toml:"backend"`
	JournalMatch     *[]string `toml:"journal_match"`
	JournalDirectory *string   `toml:"journal_directory"`

	FindTime *Duration `toml:"findtime"`
	BanTime  *Duration `toml:"bantime"`
	IgnoreIP *[]Prefix `toml:"ignoreip"`
	Actions  *[]string `toml:"actions"`
	Start    *string   `toml:"start"`
	Farm     *string   `toml:"farm"`
	Key      *string   `toml:"key"`
	Mode     *string   `toml:"mode"`
	Notify   *[]string `toml:"notify"`

	BanAddresses *bool `toml:"ban_addresses"`
	MaxTracked   *int  `toml:"max_tracked"`

	TrustTime *Duration `toml:"trust_time"`

	TrustedProxies *[]Prefix `toml:"trusted_proxies"`
	TimeZone       *string   `toml:"timezone"`

	BantimeIncrement *incrementData `toml:"bantime_increment"`
	Subnet           *subnetData    `toml:"subnet"`
}

type subnetData struct {
	IPv4      *int      `toml:"ipv4"`
	IPv6      *int      `toml:"ipv6"`
	Addresses *int      `toml:"addresses"`
	FindTime  *Duration `toml:"findtime"`
	BanTime   *Duration `toml:"bantime"`
}

// The defaults of a [jails.NAME.subnet] table, and the widest networks it may ban: a
// shorter prefix would ban a provider, not an attacker.
const (
	DefaultSubnetIPv4      = 24
	DefaultSubnetIPv6      = 64
	DefaultSubnetAddresses = 5
	widestIPv4             = jails.WidestIPv4
	widestIPv6             = jails.WidestIPv6
)

type incrementData struct {
	Enabled      bool      `toml:"enabled"`
	Factor       *float64  `toml:"factor"`
	Multipliers  []float64 `toml:"multipliers"`
	MaxTime      *Duration `toml:"maxtime"`
	RndTime      *Duration `toml:"rndtime"`
	OverallJails bool      `toml:"overalljails"`
}

type actionType struct {
	Type string `toml:"type"`
}

// parsed is one file as read.
type parsed struct {
	path string
	md   toml.MetaData
	data fileData
}

// Load reads the configuration at path and the drop-ins in jail.d/*.toml beside it.
// Relative paths in it are taken from the main file's folder. All errors found are
// returned together; each is an *Error.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	dropIns, err := filepath.Glob(filepath.Join(filepath.Dir(abs), "jail.d", "*.toml"))
	if err != nil {
		return nil, err
	}
	slices.Sort(dropIns)
	l := &loader{dir: filepath.Dir(abs)}
	for _, f := range append([]string{abs}, dropIns...) {
		l.readFile(f)
	}
	if l.unreadable {
		return nil, l.err()
	}
	cfg := l.build() // with the keys of wrong type set aside, to find every other problem too
	if len(l.errs) > 0 {
		return nil, l.err()
	}
	return cfg, nil
}

type loader struct {
	dir   string
	files []*parsed
	errs  []*Error
	texts map[string]string // each file read, by path: to find a key's line
	// readOrder is the files in the order read: errors are told in it.
	readOrder []string
	// typeErrs are the keys whose values had the wrong type: set aside, so that the
	// rest is checked, and left out of the checks that would miss them.
	typeErrs []string
	// unreadable says a file could not be read whole: nothing is built from the rest.
	unreadable bool
}

func (l *loader) fail(file string, line int, key, format string, args ...any) {
	for _, k := range l.typeErrs { // a key set aside for its type is not missing, or wrong again
		if key == k || strings.HasPrefix(key, k+"[") || strings.HasPrefix(key, k+".") {
			return
		}
	}
	l.errs = append(l.errs, &Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) err() error {
	for _, e := range l.errs {
		if e.Line == 0 && e.Key != "" { // a semantic problem: its key's line, from the text
			e.Line = lineOf(l.texts[e.File], e.Key)
		}
	}
	// In the order of the files read, then of their lines: as an editor walks them.
	order := map[string]int{}
	for i, p := range l.readOrder {
		order[p] = i
	}
	slices.SortStableFunc(l.errs, func(a, b *Error) int {
		if c := cmp.Compare(order[a.File], order[b.File]); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
	errs := make([]error, len(l.errs))
	for i, e := range l.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// isTypeError reports a value of the wrong type, which BurntSushi/toml reports as an
// error that is not a ParseError but carries the line and key in its message.
func isTypeError(err error) bool {
	var pe toml.ParseError
	return err != nil && !errors.As(err, &pe) && typeError.MatchString(err.Error())
}

// typeError matches the text of BurntSushi/toml's type mismatch errors, which are not
// ParseErrors but carry the line and key in their message.
var typeError = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

func (l *loader) readFile(path string) {
	l.readOrder = append(l.readOrder, path)
	text, err := os.ReadFile(path)
	if l.texts == nil {
		l.texts = map[string]string{}
	}
	l.texts[path] = string(text)
	if err != nil {
		l.fail(path, 0, "", "%v", errors.Unwrap(err))
		return
	}
	p := &parsed{path: path}
	p.md, err = toml.Decode(string(text), &p.data)
	// A mistake ends BurntSushi/toml's decoding: a type mistake, or a line it cannot
	// parse (a pasted INI line, a text without quotes). Its line is set aside and the
	// file decoded again, so that every such mistake of the file is reported at once,
	// and the rest of the file is still checked. A whole fail2ban file gets one piece of
	// advice instead.
	lines := strings.Split(string(text), "\n")
	wholeINI := fail2banFile.Match(text)
	for tries := 0; err != nil && !wholeINI && tries < 100; tries++ {
		var line int
		var pe toml.ParseError
		switch {
		case isTypeError(err):
			m := typeError.FindStringSubmatch(err.Error())
			line, _ = strconv.Atoi(m[1])
			l.fail(path, line, m[2], "%s", inUsersWords(m[2], m[3]))
			l.typeErrs = append(l.typeErrs, m[2])
		case errors.As(err, &pe) && pe.Position.Line >= 1 && pe.Position.Line <= len(lines):
			line = pe.Position.Line
			key := pe.LastKey
			if m := bareValue.FindStringSubmatch(lines[line-1]); m != nil && key != m[1] && !strings.HasSuffix(key, "."+m[1]) {
				key = strings.TrimPrefix(key+"."+m[1], ".")
			}
			l.fail(path, line, key, "%s", syntaxAdvice(lines[line-1], pe.Message))
		default:
			line = -1
		}
		if line < 1 || line > len(lines) || strings.TrimSpace(lines[line-1]) == "" {
			if line != -1 {
				l.unreadable = true
				return
			}
			break
		}
		lines[line-1] = ""
		p = &parsed{path: path}
		p.md, err = toml.Decode(strings.Join(lines, "\n"), &p.data)
	}
	if err != nil {
		var pe toml.ParseError
		switch {
		case wholeINI || looksLikeFail2ban(text):
			l.fail(path, 0, "", "%s", fail2banAdvice)
		case errors.As(err, &pe):
			l.fail(path, pe.Position.Line, pe.LastKey, "%s", pe.Message)
		default:
			l.fail(path, 0, "", "%v", err)
		}
		l.unreadable = true
		return
	}
	badActions := map[string]bool{}
	for name, prim := range p.data.Actions {
		if !l.decodeAction(p, name, prim) {
			badActions[name] = true
		}
	}
	reported := map[string]bool{}
	for _, k := range p.md.Undecoded() {
		k = unknownPart(k)
		if reported[k.String()] || (k[0] == "actions" && badActions[k[1]]) {
			continue
		}
		reported[k.String()] = true
		hint := ""
		if len(k) == 1 {
			hint = fmt.Sprintf(" (a fail2ban jail? in logban it is [jails.%s])", k[0])
		}
		l.fail(path, 0, k.String(), "unknown key%s%s", validKeys(k), hint)
	}
	l.files = append(l.files, p)
}

// unknownPart shortens an undecoded key to its first part that is unknown where it stands:
// a misspelt table is reported once, not once for each key in it.
func unknownPart(k toml.Key) toml.Key {
	switch {
	case !slices.Contains(tomlKeys(fileData{}), k[0]):
		return k[:1]
	case k[0] == "server":
		return k[:min(len(k), 2)]
	case k[0] == "defaults" && len(k) >= 3 && (k[1] == "bantime_increment" || k[1] == "subnet"):
		return k[:3]
	case k[0] == "defaults":
		return k[:min(len(k), 2)]
	case k[0] == "farm" && len(k) >= 2 && k[1] == "embedded":
		return k[:min(len(k), 3)]
	case k[0] == "farm":
		return k[:min(len(k), 2)]
	case k[0] == "jails" && len(k) >= 4 && (k[2] == "bantime_increment" || k[2] == "subnet"):
		return k[:4]
	default:
		return k[:min(len(k), 3)]
	}
}

// decodeAction checks an [actions.NAME] table's type and options in the file that holds
// it, so that unknown options are reported with the right file. It returns false if the
// type is missing or unknown.
func (l *loader) decodeAction(p *parsed, name string, prim toml.Primitive) bool {
	key := "actions." + name
	var t actionType
	if err := p.md.PrimitiveDecode(prim, &t); err != nil {
		l.fail(p.path, 0, key+".type", "%v", err)
		return false
	}
	if t.Type == "" {
		l.fail(p.path, 0, key+".type", "missing; valid: %s", strings.Join(actions.Kinds(), ", "))
		return false
	}
	kind, ok := actions.Lookup(t.Type)
	if !ok {
		l.fail(p.path, 0, key+".type", "unknown action type %q; valid: %s", t.Type, strings.Join(actions.Kinds(), ", "))
		return false
	}
	opts := kind.Options()
	if err := p.md.PrimitiveDecode(prim, opts); err != nil {
		l.fail(p.path, 0, key, "%v", err)
	}
	return true
}

// validKeys lists the keys allowed in the table holding k.
func validKeys(k toml.Key) string {
	var shape any
	switch {
	case len(k) == 1:
		shape = fileData{}
	case k[0] == "server" && len(k) == 2:
		shape = serverData{}
	case k[0] == "farm" && len(k) == 2:
		shape = farmData{}
	case k[0] == "policy" && len(k) == 2:
		shape = policyData{}
	case k[0] == "policy" && len(k) == 4 && k[1] == "quotas":
		shape = quotaData{}
	case k[0] == "policy" && len(k) == 3 && k[1] == "compromised":
		shape = compromisedPolicyData{}
	case k[0] == "defaults" && len(k) == 2:
		shape = jailData{}
	case k[0] == "defaults" && len(k) == 3 && k[1] == "bantime_increment":
		shape = incrementData{}
	case k[0] == "defaults" && len(k) == 3 && k[1] == "subnet":
		shape = subnetData{}
	case k[0] == "farm" && len(k) == 3 && k[1] == "embedded":
		shape = embeddedData{}
	case k[0] == "jails" && len(k) == 3:
		shape = jailData{}
	case k[0] == "jails" && len(k) == 4 && k[2] == "bantime_increment":
		shape = incrementData{}
	case k[0] == "jails" && len(k) == 4 && k[2] == "subnet":
		shape = subnetData{}
	case k[0] == "filters" && len(k) == 3:
		shape = filters.Definition{}
	default:
		if len(k) == 3 && k[0] == "actions" {
			return " for this action type"
		}
		return ""
	}
	return "; valid: " + strings.Join(tomlKeys(shape), ", ")
}

// tomlKeys lists the keys of a struct's `toml` tags, sorted.
func tomlKeys(shape any) []string {
	var names []string
	t := reflect.TypeOf(shape)
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); tag != "" {
			names = append(names, tag)
		}
	}
	slices.Sort(names)
	return names
}

// where returns the last file that sets the key, or that holds its table.
func (l *loader) where(key ...string) string {
	for n := len(key); n > 0; n-- {
		for i := len(l.files) - 1; i >= 0; i-- {
			if l.files[i].md.IsDefined(key[:n]...) {
				return l.files[i].path
			}
		}
	}
	return l.files[0].path
}

// origin says where jail name's key comes from: the last file setting it in the jail,
// else the last setting it in [defaults], else ban-server's default.
func (l *loader) origin(name, key string) string {
	for i := len(l.files) - 1; i >= 0; i-- {
		if l.files[i].md.IsDefined("jails", name, key) {
			return l.files[i].path
		}
	}
	for i := len(l.files) - 1; i >= 0; i-- {
		if l.files[i].md.IsDefined("defaults", key) {
			return l.files[i].path + " [defaults]"
		}
	}
	return "default"
}

// abs resolves a path against the main file's folder.
// SocketOf returns the control socket a configuration file names, read as leniently as
// can be: for a client to reach the running server while the file, being edited, has
// errors elsewhere. A file that does not say, or cannot be read at all, gives
// DefaultSocket.
func SocketOf(path string) string {
	var d struct {
		Server struct {
			Socket string `toml:"socket"`
		} `toml:"server"`
	}
	if _, err := toml.DecodeFile(path, &d); err != nil || d.Server.Socket == "" {
		return DefaultSocket
	}
	if filepath.IsAbs(d.Server.Socket) {
		return d.Server.Socket
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return DefaultSocket
	}
	return filepath.Join(filepath.Dir(abs), d.Server.Socket)
}

// journal checks the journal settings of a jail with backend = "journal".
func (l *loader) journal(j *Jail, d jailData, key string, at func(field string) string) {
	if d.JournalMatch == nil {
		l.fail(at("backend"), 0, key+"journal_match", "missing: say which entries to read, like journal_match = [\"_SYSTEMD_UNIT=postfix@-.service\"]")
	} else if err := journal.CheckMatches(*d.JournalMatch); err != nil {
		l.fail(at("journal_match"), 0, key+"journal_match", "%v", err)
	} else {
		j.JournalMatch = slices.Clone(*d.JournalMatch)
	}
	if d.JournalDirectory != nil {
		dir := l.abs(*d.JournalDirectory)
		if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
			l.fail(at("journal_directory"), 0, key+"journal_directory", "%s is %s: journal_directory names the folder of the journal files, like \"/var/log/journal\"", dir, watcher.Kind(fi.Mode()))
		} else if *d.JournalDirectory == "" {
			l.fail(at("journal_directory"), 0, key+"journal_directory", "empty; leave it out to read the system journal")
		} else {
			j.JournalDirectory = dir
		}
	}
}

func (l *loader) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

func (l *loader) build() *Config {
	cfg := &Config{
		Server: Server{Socket: DefaultSocket, SocketGID: -1, Database: DefaultDatabase, LogLevel: slog.LevelInfo, MaxLineBytes: DefaultMaxLineBytes,
			ReconcileInterval: DefaultReconcileInterval},
		Filters: map[string]Filter{},
		Actions: map[string]Action{},
		Jails:   map[string]Jail{},
		Origins: map[string]string{},
	}
	filterDefs := map[string]filters.Definition{}
	actionPrims := map[string]*parsed{}
	jailDatas := map[string]jailData{}
	var farm *farmData
	farmFile := ""
	var pol *policyData
	polFile := ""
	var zim *zimbraData
	zimFile := ""
	var defaults jailData
	for _, p := range l.files {
		if p.data.Defaults != nil {
			defaults = merge(defaults, *p.data.Defaults)
		}
		if p.data.Farm != nil {
			merged := merge(deref(farm), *p.data.Farm)
			farm, farmFile = &merged, p.path
		}
		if p.data.Policy != nil {
			merged := merge(deref(pol), *p.data.Policy)
			pol, polFile = &merged, p.path
		}
		if p.data.Zimbra != nil {
			merged := merge(deref(zim), *p.data.Zimbra)
			zim, zimFile = &merged, p.path
		}
		cfg.Files = append(cfg.Files, p.path)
		s := p.data.Server
		if s.Socket != nil {
			cfg.Server.Socket = l.abs(*s.Socket)
		}
		if s.SocketGroup != nil {
			cfg.Server.SocketGID = l.socketGroup(p.path, "server.socket_group", s.SocketGroup)
		}
		if s.Database != nil {
			cfg.Server.Database = l.abs(*s.Database)
		}
		if s.IgnoreIP != nil {
			cfg.Server.IgnoreIP = prefixes(*s.IgnoreIP)
		}
		if s.TrustedProxies != nil {
			cfg.Server.TrustedProxies = prefixes(*s.TrustedProxies)
		}
		if s.MaxLineBytes != nil {
			cfg.Server.MaxLineBytes = *s.MaxLineBytes
			if *s.MaxLineBytes < 256 || *s.MaxLineBytes > 16<<20 {
				l.fail(p.path, 0, "server.max_line_bytes", "must be between 256 and 16777216, got %d", *s.MaxLineBytes)
			}
		}
		if s.Metrics != nil {
			cfg.Server.Metrics = *s.Metrics
			if _, _, err := net.SplitHostPort(*s.Metrics); err != nil && *s.Metrics != "" {
				l.fail(p.path, 0, "server.metrics", "%q: want host:port, like \"127.0.0.1:9191\"", *s.Metrics)
			}
		}
		if s.ReconcileInterval != nil {
			cfg.Server.ReconcileInterval = time.Duration(*s.ReconcileInterval)
			if *s.ReconcileInterval < 0 || (*s.ReconcileInterval > 0 && *s.ReconcileInterval < Duration(time.Second)) {
				l.fail(p.path, 0, "server.reconcile_interval", "must be 0 (at start only) or at least 1s (like \"5m\")")
			}
		}
		if s.LogLevel != nil {
			if err := cfg.Server.LogLevel.UnmarshalText([]byte(*s.LogLevel)); err != nil {
				l.fail(p.path, 0, "server.loglevel", "unknown level %q; valid: %s", *s.LogLevel, strings.Join(levelChoices, ", "))
			}
		}
		maps.Copy(filterDefs, p.data.Filters)
		for name := range p.data.Actions {
			actionPrims[name] = p
		}
		for name, j := range p.data.Jails {
			jailDatas[name] = merge(jailDatas[name], j)
		}
	}
	if farm != nil {
		cfg.Farm = l.buildFarm(farmFile, *farm)
	}
	for _, name := range slices.Sorted(maps.Keys(actionPrims)) {
		p := actionPrims[name]
		prim := p.data.Actions[name]
		var t actionType
		p.md.PrimitiveDecode(prim, &t) //nolint:errcheck // checked in readFile
		kind, ok := actions.Lookup(t.Type)
		if !ok {
			continue // reported by readFile
		}
		opts := kind.Options()
		p.md.PrimitiveDecode(prim, opts) //nolint:errcheck // checked in readFile
		if r, ok := opts.(interface{ ResolvePaths(dir string) }); ok {
			r.ResolvePaths(l.dir)
		}
		if v, ok := opts.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				l.fail(p.path, 0, "actions."+name, "%v", err)
			}
		}
		cfg.Actions[name] = Action{Name: name, Type: t.Type, Options: opts}
	}
	for _, name := range slices.Sorted(maps.Keys(filterDefs)) {
		if f, ok := l.filter(name, filterDefs); ok {
			cfg.Filters[name] = f
		}
	}
	for _, name := range slices.Sorted(maps.Keys(jailDatas)) {
		if j, ok := l.buildJail(name, merge(defaults, jailDatas[name]), cfg, filterDefs); ok {
			for _, key := range tomlKeys(jailData{}) {
				cfg.Origins["jails."+name+"."+key] = l.origin(name, key)
			}
			cfg.Jails[name] = j
		}
	}
	if pol != nil {
		cfg.Policy = l.buildPolicy(polFile, *pol, cfg)
	}
	if zim != nil {
		cfg.Zimbra = l.buildZimbra(zimFile, *zim)
	}
	return cfg
}

// deref returns *p, or the zero value if p is nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// merge returns base with the keys set in over replaced; both are structs of pointers.
func merge[T any](base, over T) T {
	b := reflect.ValueOf(&base).Elem()
	o := reflect.ValueOf(over)
	for i := range o.NumField() {
		if !o.Field(i).IsNil() {
			b.Field(i).Set(o.Field(i))
		}
	}
	return base
}

func (l *loader) buildJail(name string, d jailData, cfg *Config, filterDefs map[string]filters.Definition) (Jail, bool) {
	key := "jails." + name + "."
	at := func(field string) string { return l.where("jails", name, field) }
	j := Jail{
		Name:     name,
		Filter:   name,
		MaxRetry: DefaultMaxRetry,
		FindTime: DefaultFindTime,
		BanTime:  DefaultBanTime,
		Start:    StartResume,
	}
	if d.Enabled != nil && !*d.Enabled {
		return Jail{}, false
	}
	errs := len(l.errs)
	if d.Filter != nil {
		j.Filter = *d.Filter
	}
	// A filter defined in the configuration was checked (and any error reported) already.
	if _, defined := filterDefs[j.Filter]; !defined {
		if f, ok := l.filter(j.Filter, filterDefs); ok {
			cfg.Filters[j.Filter] = f
		} else if _, found, _ := filters.Builtin(j.Filter); !found {
			choices := slices.Sorted(maps.Keys(filterDefs))
			choices = append(choices, filters.BuiltinNames()...)
			l.fail(at("filter"), 0, key+"filter", "unknown filter %q; valid: %s (or define [filters.%s])", j.Filter, strings.Join(choices, ", "), j.Filter)
		}
	}
	farmShared := (cfg.Farm != nil && (d.Farm == nil || *d.Farm != FarmLocal))
	j.Backend = BackendFile
	if d.Backend != nil {
		j.Backend = *d.Backend
	}
	switch j.Backend {
	case BackendFile:
		if d.JournalMatch != nil {
			l.fail(at("journal_match"), 0, key+"journal_match", "reads the systemd journal: add backend = \"journal\" (this jail reads its logpath)")
		}
		if d.JournalDirectory != nil {
			l.fail(at("journal_directory"), 0, key+"journal_directory", "reads the systemd journal: add backend = \"journal\" (this jail reads its logpath)")
		}
	case BackendJournal:
		l.journal(&j, d, key, at)
	default:
		hint := ""
		if j.Backend == "systemd" {
			hint = ` (fail2ban's "systemd" is "journal" here)`
		}
		l.fail(at("backend"), 0, key+"backend", "unknown backend %q; valid: %q (the logpath files, the default), %q (the systemd journal, with journal_match)%s", j.Backend, BackendFile, BackendJournal, hint)
	}
	if j.Backend == BackendJournal {
		if d.LogPath != nil && len(*d.LogPath) > 0 {
			l.fail(at("logpath"), 0, key+"logpath", "a jail with backend = \"journal\" reads no files: remove logpath, or make a second jail for the files")
		}
	} else if (d.LogPath == nil || len(*d.LogPath) == 0) && !farmShared {
		l.fail(at("logpath"), 0, key+"logpath", "no log files; list at least one, like logpath = [\"/var/log/zimbra.log\"] (only a jail shared with a farm may have none: it enforces the bans other hosts decide)")
	} else if d.LogPath != nil {
		for i, p := range *d.LogPath {
			if p == "" {
				l.fail(at("logpath"), 0, key+"logpath", "empty path")
				continue
			}
			if IsPattern(p) {
				if _, err := filepath.Match(p, ""); err != nil {
					l.fail(at("logpath"), 0, fmt.Sprintf("%slogpath[%d]", key, i), "%q is not a valid pattern (%v); write it like \"/var/log/mail/*.log\"", p, err)
					continue
				}
			}
			// A path that does not exist yet is fine: it is followed when it appears.
			if fi, err := os.Stat(l.abs(p)); err == nil && !fi.Mode().IsRegular() {
				l.fail(at("logpath"), 0, fmt.Sprintf("%slogpath[%d]", key, i), "%s is %s: a logpath must name a log file", l.abs(p), watcher.Kind(fi.Mode()))
				continue
			}
			if !slices.Contains(j.LogPath, l.abs(p)) {
				j.LogPath = append(j.LogPath, l.abs(p))
			}
		}
	}
	if d.MaxRetry != nil {
		j.MaxRetry = *d.MaxRetry
		if j.MaxRetry < 1 {
			l.fail(at("maxretry"), 0, key+"maxretry", "must be at least 1, got %d", j.MaxRetry)
		}
	}
	if d.FindTime != nil {
		j.FindTime = time.Duration(*d.FindTime)
		if j.FindTime <= 0 {
			l.fail(at("findtime"), 0, key+"findtime", "must be longer than 0 (like \"10m\")")
		}
	}
	if d.BanTime != nil {
		j.BanTime = time.Duration(*d.BanTime)
		if j.BanTime == 0 {
			l.fail(at("bantime"), 0, key+"bantime", "must be longer than 0, or -1 for until unbanned")
		}
	}
	if d.IgnoreIP != nil {
		j.IgnoreIP = prefixes(*d.IgnoreIP)
	}
	if d.TrustedProxies != nil {
		j.TrustedProxies = prefixes(*d.TrustedProxies)
	}
	if d.TimeZone != nil {
		j.TimeZone = *d.TimeZone
		if _, err := ParseTimeZone(j.TimeZone); err != nil {
			l.fail(at("timezone"), 0, key+"timezone", "%v", err)
		}
	}
	if d.Start != nil {
		j.Start = *d.Start
		if !slices.Contains(startChoices, j.Start) {
			l.fail(at("start"), 0, key+"start", "unknown start %q; valid: %s", j.Start, strings.Join(startChoices, ", "))
		}
	}
	j.Farm = FarmLocal
	if cfg.Farm != nil {
		j.Farm = FarmCount
	}
	if d.Farm != nil {
		j.Farm = *d.Farm
		switch {
		case !slices.Contains(farmModes, j.Farm):
			l.fail(at("farm"), 0, key+"farm", "unknown farm mode %q; valid: %s", j.Farm, strings.Join(farmModes, ", "))
		case cfg.Farm == nil && j.Farm != FarmLocal:
			l.fail(at("farm"), 0, key+"farm", "farm = %q needs a [farm] table naming the farm and its NATS servers", j.Farm)
		}
	}
	if j.Farm != FarmLocal && !farmName.MatchString(name) {
		l.fail(at("farm"), 0, key+"farm", "a jail shared with the farm is named with letters, digits, '-' or '_' only (its name is part of NATS subjects); rename it, or set farm = \"local\"")
	}
	if inc := d.BantimeIncrement; inc != nil {
		ikey := key + "bantime_increment."
		j.Increment = jails.Increment{Enabled: inc.Enabled, Factor: 1, Multipliers: inc.Multipliers, OverallJails: inc.OverallJails}
		if inc.Factor != nil {
			j.Increment.Factor = *inc.Factor
			if *inc.Factor <= 0 {
				l.fail(at("bantime_increment"), 0, ikey+"factor", "must be more than 0, got %v", *inc.Factor)
			}
		}
		for i, m := range inc.Multipliers {
			if m <= 0 {
				l.fail(at("bantime_increment"), 0, fmt.Sprintf("%smultipliers[%d]", ikey, i), "must be more than 0, got %v", m)
			}
		}
		if inc.MaxTime != nil {
			if j.Increment.MaxTime = time.Duration(*inc.MaxTime); j.Increment.MaxTime < 0 {
				l.fail(at("bantime_increment"), 0, ikey+"maxtime", "must be a length of time, not -1")
			}
		}
		if inc.RndTime != nil {
			if j.Increment.RndTime = time.Duration(*inc.RndTime); j.Increment.RndTime < 0 {
				l.fail(at("bantime_increment"), 0, ikey+"rndtime", "must be a length of time, not -1")
			}
		}
	}
	if sn := d.Subnet; sn != nil {
		l.buildSubnet(&j, sn, key+"subnet.", at("subnet"))
	}
	j.MaxTracked = jails.DefaultMaxTracked
	if d.MaxTracked != nil {
		if j.MaxTracked = *d.MaxTracked; j.MaxTracked < 1000 || j.MaxTracked > 100_000_000 {
			l.fail(at("max_tracked"), 0, key+"max_tracked", "must be between 1000 and 100000000, got %d (each address tracked costs about 260 bytes)", j.MaxTracked)
		}
	}
	j.Key, j.TrustTime, j.Mode = jails.KeyAddress, DefaultTrustTime, ModeFailures
	if d.Key != nil {
		if j.Key = *d.Key; !slices.Contains(keyChoices, j.Key) {
			l.fail(at("key"), 0, key+"key", "unknown key %q; valid: %s", j.Key, strings.Join(keyChoices, ", "))
		}
	}
	if j.Key != jails.KeyAddress && j.Farm == FarmCount {
		l.fail(at("key"), 0, key+"key", "a jail keyed by %s counts on this host: set farm = \"bans\" (its bans are still shared) or \"local\"", j.Key)
	}
	if f, ok := cfg.Filters[j.Filter]; ok && j.Key == jails.KeyDevice && !filters.ReadsDevices(f.Definition) {
		l.fail(at("key"), 0, key+"key", "filter %q reads no device: key = \"device\" needs <DEVICE> in its failregex, or a filter such as zimbra-activesync", j.Filter)
	}
	j.BanAddresses = j.Key == jails.KeyUser
	if d.BanAddresses != nil {
		if j.BanAddresses = *d.BanAddresses; j.Key == jails.KeyAddress {
			l.fail(at("ban_addresses"), 0, key+"ban_addresses", "only a jail keyed by user or device bans addresses apart from its key; this jail is keyed by address")
		}
	}
	if d.Mode != nil {
		if j.Mode = *d.Mode; !slices.Contains(modeChoices, j.Mode) {
			l.fail(at("mode"), 0, key+"mode", "unknown mode %q; valid: %s", j.Mode, strings.Join(modeChoices, ", "))
		}
	}
	if j.Mode == ModeRate {
		j.TrustTime = 0 // a request is counted whoever sends it
		if d.TrustTime != nil && *d.TrustTime != 0 {
			l.fail(at("trust_time"), 0, key+"trust_time", "a rate jail counts every request, logged in or not: remove trust_time, or use mode = \"failures\"")
		}
		if d.Subnet != nil {
			l.fail(at("subnet"), 0, key+"subnet", "a rate jail bans what sends too much, not networks: remove [%ssubnet], or use mode = \"failures\"", key)
		}
	}
	if d.TrustTime != nil && j.Mode != ModeRate {
		if j.TrustTime = time.Duration(*d.TrustTime); j.TrustTime < 0 {
			l.fail(at("trust_time"), 0, key+"trust_time", "must be a length of time (0: trust no login), not -1")
		}
	}
	if d.Notify != nil {
		for i, a := range *d.Notify {
			act, ok := cfg.Actions[a]
			if !ok {
				l.fail(at("notify"), 0, fmt.Sprintf("%snotify[%d]", key, i), "unknown action %q; defined: %s", a, actionChoices(cfg))
				continue
			}
			if kind, _ := actions.Lookup(act.Type); !kind.Notifies {
				l.fail(at("notify"), 0, fmt.Sprintf("%snotify[%d]", key, i), "action %q is of type %s, which passes on no notice; use a log, mail, webhook or exec action", a, act.Type)
				continue
			}
			j.Notify = append(j.Notify, a)
		}
	}
	if d.Actions == nil || len(*d.Actions) == 0 {
		l.fail(at("actions"), 0, key+"actions", "no actions; name at least one of: %s", actionChoices(cfg))
	} else if j.Key != jails.KeyAddress && !j.BanAddresses && !slices.ContainsFunc(*d.Actions, func(a string) bool {
		kind, _ := actions.Lookup(cfg.Actions[a].Type)
		return kind.Notifies
	}) {
		l.fail(at("actions"), 0, key+"actions", "a jail keyed by %s bans no address (ban_addresses = false): name a log, mail, webhook or exec action to hear of its bans", j.Key)
	} else {
		for i, a := range *d.Actions {
			if _, ok := cfg.Actions[a]; !ok {
				l.fail(at("actions"), 0, fmt.Sprintf("%sactions[%d]", key, i), "unknown action %q; defined: %s", a, actionChoices(cfg))
				continue
			}
			if slices.Contains(j.Actions, a) {
				l.fail(at("actions"), 0, fmt.Sprintf("%sactions[%d]", key, i), "action %q listed twice", a)
			}
			j.Actions = append(j.Actions, a)
		}
	}
	return j, len(l.errs) == errs
}

// buildSubnet reads a [jails.NAME.subnet] table into j; file is where it was set.
func (l *loader) buildSubnet(j *Jail, sn *subnetData, key, file string) {
	j.Subnet = jails.Subnet{IPv4: DefaultSubnetIPv4, IPv6: DefaultSubnetIPv6, Addresses: DefaultSubnetAddresses, FindTime: j.FindTime}
	j.SubnetBanTime = j.BanTime
	if sn.IPv4 != nil {
		if j.Subnet.IPv4 = *sn.IPv4; j.Subnet.IPv4 != 0 && (j.Subnet.IPv4 < widestIPv4 || j.Subnet.IPv4 >= 32) {
			l.fail(file, 0, key+"ipv4", "prefix length %d: must be %d to 31 (0: never for IPv4); a shorter one bans a whole provider", j.Subnet.IPv4, widestIPv4)
		}
	}
	if sn.IPv6 != nil {
		if j.Subnet.IPv6 = *sn.IPv6; j.Subnet.IPv6 != 0 && (j.Subnet.IPv6 < widestIPv6 || j.Subnet.IPv6 >= 128) {
			l.fail(file, 0, key+"ipv6", "prefix length %d: must be %d to 127 (0: never for IPv6); a shorter one bans a whole provider", j.Subnet.IPv6, widestIPv6)
		}
	}
	if sn.Addresses != nil {
		if j.Subnet.Addresses = *sn.Addresses; j.Subnet.Addresses < 2 {
			l.fail(file, 0, key+"addresses", "must be at least 2 (distinct addresses of one network), got %d", j.Subnet.Addresses)
		}
	}
	if sn.FindTime != nil {
		if j.Subnet.FindTime = time.Duration(*sn.FindTime); j.Subnet.FindTime <= 0 {
			l.fail(file, 0, key+"findtime", "must be longer than 0 (like \"1h\")")
		}
	}
	if sn.BanTime != nil {
		if j.SubnetBanTime = time.Duration(*sn.BanTime); j.SubnetBanTime == 0 {
			l.fail(file, 0, key+"bantime", "must be longer than 0, or -1 for until unbanned")
		}
	}
}

func actionChoices(cfg *Config) string {
	if len(cfg.Actions) == 0 {
		return "(none: define one in [actions.NAME])"
	}
	return strings.Join(slices.Sorted(maps.Keys(cfg.Actions)), ", ")
}

// filter checks the filter called name, defined in the configuration or built in. It
// reports compile errors against the filter's keys and returns false for them, and for a
// name that is neither.
func (l *loader) filter(name string, defs map[string]filters.Definition) (Filter, bool) {
	f := Filter{Name: name}
	if d, ok := defs[name]; ok {
		f.Definition = d
	} else {
		d, ok, err := filters.Builtin(name)
		if !ok {
			return Filter{}, false
		}
		if err != nil {
			l.fail(l.files[0].path, 0, "filters."+name, "%v", err)
			return Filter{}, false
		}
		f.Definition, f.Builtin = d, true
	}
	if _, err := f.Compile(nil); err != nil {
		var pe *filters.PatternError
		var ue *filters.UnknownParserError
		switch {
		case f.Builtin:
			l.fail(l.files[0].path, 0, "filters."+name, "built-in filter: %v", err)
		case errors.As(err, &pe) && errors.Is(err, filters.ErrNoHost) && strings.Contains(pe.Source, "<ADDR>"):
			l.fail(l.where("filters", name, pe.Field), 0, fmt.Sprintf("filters.%s.%s[%d]", name, pe.Field, pe.Index),
				"%q has no <HOST>: fail2ban's <ADDR> is written <HOST> here (it matches an address only)", pe.Source)
		case errors.As(err, &pe) && errors.Is(err, filters.ErrNoHost):
			l.fail(l.where("filters", name, pe.Field), 0, fmt.Sprintf("filters.%s.%s[%d]", name, pe.Field, pe.Index),
				"%q has no <HOST>: mark where the client's address is, like 'from <HOST>'", pe.Source)
		case errors.As(err, &pe):
			l.fail(l.where("filters", name, pe.Field), 0, fmt.Sprintf("filters.%s.%s[%d]", name, pe.Field, pe.Index),
				"%q: %v", pe.Source, pe.Err)
		case errors.As(err, &ue):
			l.fail(l.where("filters", name, "parser"), 0, "filters."+name+".parser",
				"unknown parser %q; valid: %s", ue.Parser, strings.Join(filters.FormatNames(), ", "))
		case errors.Is(err, filters.ErrParserAndRegex):
			l.fail(l.where("filters", name, "parser"), 0, "filters."+name,
				"set parser or failregex, not both: a parser reads the whole line itself")
		case errors.Is(err, filters.ErrNoFailRegex):
			l.fail(l.where("filters", name), 0, "filters."+name+".failregex",
				"no failregex; give at least one, like failregex = ['login failed from <HOST>'], or a parser (%s)", strings.Join(filters.FormatNames(), ", "))
		default:
			l.fail(l.where("filters", name), 0, "filters."+name+".failregex", "%v", err)
		}
		return Filter{}, false
	}
	return f, true
}

// Error is one configuration problem.
type Error struct {
	File string
	Line int    // 0 if unknown
	Key  string // the key path, like jails.sasl.findtime; "" if none
	Msg  string
}

// Error reads "file:line: key: message", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}
