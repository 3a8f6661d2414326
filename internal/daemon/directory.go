package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/zimbra"
)

// The farm's directory ([zimbra]): the Zimbra or Carbonio LDAP directory names the
// farm's servers, the proxies mailboxd trusts and the addresses DoSFilter spares. The
// daemon reads it at start, every [zimbra] every and at each reload, and keeps what it
// names never banned (d.directory, checked by every jail's ignore list at each check):
// a server added to the farm is spared from the next read on, one removed may be banned
// again. A read that fails keeps the last one's addresses, and says so once per error.

// directoryState is what one read of the directory leaves for the next.
type directoryState struct {
	err        string   // the last read's error, "" if it worked
	unresolved []string // the server names the last read could not resolve
	read       bool     // a read has worked
}

// followDirectory reads the directory every [zimbra] every, and when a reload asks,
// until ctx is done.
func (d *Daemon) followDirectory(ctx context.Context, st directoryState) {
	for {
		d.mu.RLock()
		every := time.Hour // without [zimbra], only a reload that adds it reads
		if z := d.cfg.Zimbra; z != nil {
			every = z.Every
		}
		d.mu.RUnlock()
		t := time.NewTimer(every)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-d.directoryRead:
			t.Stop()
		}
		st = d.readDirectory(ctx, st, false)
	}
}

// readDirectory reads the directory [zimbra] names, if any, and makes what it names
// never banned; st is the last read's state, the new one is returned. At start (before
// the goroutine owning the database runs), a directory that does not answer leaves its
// last read, kept in the database, in force.
func (d *Daemon) readDirectory(ctx context.Context, st directoryState, atStart bool) directoryState {
	d.mu.RLock()
	z := d.cfg.Zimbra
	d.mu.RUnlock()
	if z == nil {
		if len(d.directory.Prefixes()) > 0 {
			d.directory.Set(nil)
			d.setDirectoryTrusted(nil)
			d.logger.Info("[zimbra] is gone: the directory's addresses are no longer spared")
		}
		return directoryState{}
	}
	a, host, err := readZimbra(ctx, z.Root, d.opts.Resolve)
	if err != nil {
		if msg := err.Error(); msg != st.err {
			d.logger.Warn("reading the farm's directory ([zimbra]); the last read's addresses stay never banned", "err", err, "read_before", st.read)
			st.err = msg
		}
		if atStart {
			d.restoreDirectory(ctx)
		}
		return st
	}
	if st.err != "" {
		d.logger.Info("the farm's directory answers again", "host", host)
	}
	st.err = ""
	never := a.NeverBanned()
	was := d.directory.Prefixes()
	d.directory.Set(never)
	if added, removed := diffPrefixes(was, never); len(added)+len(removed) > 0 {
		d.logger.Info("the farm's directory changed what is never banned", "added", prefixList(added), "removed", prefixList(removed),
			"servers", len(a.Servers), "trusted", len(a.Trusted), "safe", len(a.Safe))
	}
	if !slices.Equal(st.unresolved, a.Unresolved) {
		if len(a.Unresolved) > 0 {
			d.logger.Warn("servers of the farm's directory do not resolve: they are not spared until they do", "servers", strings.Join(a.Unresolved, "; "))
		}
		st.unresolved = a.Unresolved
	}
	for _, v := range a.Ignored {
		if !st.read {
			d.logger.Warn("the farm's directory holds a value that is neither an address nor a network; left out", "value", v)
		}
	}
	trustedChanged := d.setDirectoryTrusted(a.Trusted)
	if trustedChanged && !atStart { // at start, the jails are built after this read
		select { // the jails step over the new proxies once built again
		case d.redo <- struct{}{}:
		default:
		}
	}
	if !st.read || trustedChanged || !slices.Equal(was, never) {
		b, _ := json.Marshal(directoryRecord{NeverBanned: never, Trusted: a.Trusted}) // prefixes: it cannot fail
		if atStart {
			d.saveDirectory(ctx, b)
		} else {
			select { // the goroutine owning the database keeps it; a newer read replaces one waiting
			case <-d.directorySaves:
			default:
			}
			d.directorySaves <- b
		}
	}
	st.read = true
	return st
}

// directoryRecord is a read of the directory as the database keeps it.
type directoryRecord struct {
	NeverBanned []netip.Prefix `json:"never_banned"`
	Trusted     []netip.Prefix `json:"trusted"`
}

// saveDirectory keeps a good read of the directory, for a start when it does not
// answer. It runs where the database is owned: at start, or on the goroutine owning
// changes.
func (d *Daemon) saveDirectory(ctx context.Context, b []byte) {
	if err := d.store.SaveDirectory(ctx, b, d.opts.Clock.Now()); err != nil {
		d.logger.Warn("keeping the directory's read", "err", err)
	}
}

// restoreDirectory spares what the directory's last good read named, when the
// directory does not answer at a start: its servers are never banned meanwhile.
func (d *Daemon) restoreDirectory(ctx context.Context) {
	b, at, err := d.store.Directory(ctx)
	if err != nil || b == nil {
		if err != nil {
			d.logger.Warn("reading the directory's last read", "err", err)
		}
		return
	}
	var r directoryRecord
	if err := json.Unmarshal(b, &r); err != nil {
		d.logger.Warn("the directory's last read is unreadable", "err", err)
		return
	}
	d.directory.Set(r.NeverBanned)
	d.setDirectoryTrusted(r.Trusted)
	d.logger.Warn("the farm's directory does not answer: its last read's addresses are never banned until it does",
		"read_at", at, "addresses", len(r.NeverBanned))
}

// setDirectoryTrusted makes ps the directory's trusted proxies; it reports whether they
// changed.
func (d *Daemon) setDirectoryTrusted(ps []netip.Prefix) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.Equal(d.directoryTrusted, ps) {
		return false
	}
	d.directoryTrusted = ps
	return true
}

// readZimbra reads the directory of the install at root ("" finds it), as its
// localconfig.xml says to, for the host it names.
func readZimbra(ctx context.Context, root string, resolve zimbra.Resolver) (zimbra.Addresses, string, error) {
	in, err := zimbra.Find(root)
	if err != nil {
		return zimbra.Addresses{}, "", err
	}
	lc, err := zimbra.ReadLocalConfig(in.LocalConfig())
	if err != nil {
		return zimbra.Addresses{}, "", err
	}
	access, err := lc.LDAP()
	if err != nil {
		return zimbra.Addresses{}, "", fmt.Errorf("%s: %w", in.LocalConfig(), err)
	}
	access.CAFile = in.CAFile()
	dir, err := zimbra.Read(access)
	if err != nil {
		return zimbra.Addresses{}, "", err
	}
	host := lc["zimbra_server_hostname"]
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return dir.Addresses(rctx, host, resolve), host, nil
}

// diffPrefixes returns what now holds that was lacks, and what was holds that now lacks.
func diffPrefixes(was, now []netip.Prefix) (added, removed []netip.Prefix) {
	for _, p := range now {
		if !slices.Contains(was, p) {
			added = append(added, p)
		}
	}
	for _, p := range was {
		if !slices.Contains(now, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}

// prefixList writes ps for a log line as bans name them (actions.Target), at most 20.
func prefixList(ps []netip.Prefix) string {
	var ss []string
	for i, p := range ps {
		if i == 20 {
			ss = append(ss, fmt.Sprintf("and %d more", len(ps)-20))
			break
		}
		ss = append(ss, actions.Target(p))
	}
	return strings.Join(ss, ", ")
}
