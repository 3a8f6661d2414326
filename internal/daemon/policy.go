package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/internal/config"
	"github.com/logban/logban/internal/control"
	"github.com/logban/logban/internal/farm"
	"github.com/logban/logban/internal/listener"
	"github.com/logban/logban/internal/policy"
)

// policyRuntime is the running Postfix policy service.
type policyRuntime struct {
	cfg    config.Policy
	policy *policy.Policy
	server *policy.Server
	farm   bool // quotas' messages counted across the farm
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	flagged []policy.Flag // the last accounts flagged, newest last
	flags   int64         // accounts flagged since the service started
}

// maxFlagsShown is how many flagged accounts status keeps.
const maxFlagsShown = 100

// listenPolicy listens where pc says: host:port, or unix:/path, a socket whose group
// (Postfix's, by default) may connect, made without a window for the folder's owner
// to aim it elsewhere; a socket left by a crash is replaced, anything else is not.
func listenPolicy(pc *config.Policy) (net.Listener, error) {
	path, isUnix := strings.CutPrefix(pc.Listen, "unix:")
	if !isUnix {
		return net.Listen("tcp", pc.Listen)
	}
	perm := fs.FileMode(0o600)
	if pc.SocketGID != -1 {
		perm = 0o660
	}
	return listener.Unix(path, perm, pc.SocketGID)
}

// startPolicy starts the policy service pc describes, in place of the one running, if
// any; with pc nil it only stops that one. The service ends with ctx.
func (d *Daemon) startPolicy(ctx context.Context, pc *config.Policy) error {
	d.stopPolicy()
	if pc == nil {
		return nil
	}
	ln, err := listenPolicy(pc)
	if err != nil {
		return fmt.Errorf("policy.listen %s: %w", pc.Listen, err)
	}
	rt := &policyRuntime{cfg: *pc, done: make(chan error, 1), farm: d.farm != nil}
	deps := policy.Deps{Banned: d.manager.Holder, Flagged: d.flagged(rt), Now: d.opts.Clock.Now}
	if d.farm != nil { // four MTAs, one quota
		var qs []farm.Quota
		for _, q := range pc.Settings.Quotas {
			qs = append(qs, farm.Quota{Name: q.Name, Messages: q.Messages, Recipients: q.Recipients, Window: q.Window})
		}
		d.farm.SetQuotas(qs)
		deps.FarmCount = func(q policy.Quota, holder string, rcpts int) (bool, error) {
			ctx, cancel := context.WithTimeout(context.Background(), pc.Timeout)
			defer cancel()
			return d.farm.CountMessage(ctx, farm.Quota{Name: q.Name, Messages: q.Messages, Recipients: q.Recipients, Window: q.Window}, holder, rcpts)
		}
	}
	p := policy.New(pc.Settings, deps)
	d.policyMu.Lock()
	if d.policyState != nil { // what the last service counted counts on
		p.Restore(*d.policyState)
		d.policyState = nil
	}
	d.policyMu.Unlock()
	rt.policy = p
	rt.server = policy.NewServer(p, pc.Timeout, d.logger.With("part", "policy"))
	kernel, err := listener.NewPeers() // in the daemon's network namespace, as the listener
	if err != nil {
		ln.Close()
		return fmt.Errorf("policy service: %w", err)
	}
	rt.server.Peers = &policy.Peers{UIDs: pc.AllowUIDs, Remote: pc.AllowHosts, Kernel: kernel}
	rt.server.MaxConns = pc.MaxConns
	pctx, cancel := context.WithCancel(ctx)
	rt.cancel = cancel
	go func() {
		err := rt.server.Serve(pctx, ln)
		if err != nil { // Postfix's smtpd_policy_service_default_action answers meanwhile
			d.logger.Error("policy service stopped; Postfix answers its default action until a reload or restart", "err", err)
		}
		kernel.Close()
		rt.done <- err
	}()
	d.policyMu.Lock()
	d.policy = rt
	d.policyMu.Unlock()
	d.logger.Info("policy service listening", "listen", pc.Listen, "quotas", len(pc.Settings.Quotas))
	return nil
}

// stopPolicy stops the policy service, if one runs, and waits for its connections to
// close.
func (d *Daemon) stopPolicy() {
	d.policyMu.Lock()
	rt := d.policy
	d.policy = nil
	d.policyMu.Unlock()
	if rt == nil {
		return
	}
	rt.cancel()
	<-rt.done // its error, if any, was logged when it came
	st := rt.policy.State()
	d.policyMu.Lock()
	d.policyState = &st
	d.policyMu.Unlock()
}

// loadPolicyState takes what the policy service counted before the last stop from the
// database. A state that cannot be read is logged and left: the counts start afresh.
func (d *Daemon) loadPolicyState(ctx context.Context) {
	data, err := d.store.PolicyState(ctx)
	if err != nil || data == nil {
		if err != nil {
			d.logger.Warn("the policy service's counts from the last run cannot be read; they start afresh", "err", err)
		}
		return
	}
	var st policy.State
	if err := json.Unmarshal(data, &st); err != nil {
		d.logger.Warn("the policy service's counts from the last run cannot be read; they start afresh", "err", err)
		return
	}
	d.policyMu.Lock()
	d.policyState = &st
	d.policyMu.Unlock()
}

// savePolicyState keeps what the stopped policy service counted in the database, for the
// next start.
func (d *Daemon) savePolicyState() {
	d.policyMu.Lock()
	st := d.policyState
	d.policyMu.Unlock()
	if st == nil {
		return
	}
	data, err := json.Marshal(st)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = d.store.SavePolicyState(ctx, data)
	}
	if err != nil {
		d.logger.Error("saving the policy service's counts; they start afresh at the next start", "err", err)
	}
}

// runningPolicy returns the policy service, or nil.
func (d *Daemon) runningPolicy() *policyRuntime {
	d.policyMu.Lock()
	defer d.policyMu.Unlock()
	return d.policy
}

// flagged returns what the policy service hands each account flagged to: it is logged,
// kept for status, and passed on to the compromised actions with {user}.
func (d *Daemon) flagged(rt *policyRuntime) func(policy.Flag) {
	notify := d.notifier(rt.cfg.CompromisedActions)
	return func(f policy.Flag) {
		c := rt.cfg.Settings.Compromised
		text := fmt.Sprintf("logged in from %d addresses in %d networks within %s: compromised?", len(f.Addresses), f.Networks, c.Window)
		d.logger.Warn("account flagged: "+text, "user", f.Account, "addresses", len(f.Addresses), "networks", f.Networks)
		rt.mu.Lock()
		rt.flagged = append(rt.flagged, f)
		rt.flags++
		if len(rt.flagged) > maxFlagsShown {
			rt.flagged = rt.flagged[1:]
		}
		rt.mu.Unlock()
		if notify != nil {
			n := actions.Notice{Jail: "policy", Kind: "compromised", User: f.Account, Text: text, Time: f.At}
			if len(f.Addresses) > 0 {
				n.Addr = f.Addresses[len(f.Addresses)-1]
			}
			notify(n)
		}
	}
}

// PolicyStatus returns the policy service's figures: requests, answers by kind, quota
// holders near their limits, accounts flagged.
func (d *Daemon) PolicyStatus() (control.PolicyStatus, error) {
	rt := d.runningPolicy()
	if rt == nil {
		return control.PolicyStatus{}, fmt.Errorf("policy service: %w (no [policy] table in the configuration)", control.ErrNotFound)
	}
	st := rt.server.Stats()
	tables := rt.server.Policy().Tables()
	out := control.PolicyStatus{Listen: rt.cfg.Listen, Requests: st.Requests, Malformed: st.Malformed, Answers: st.Answers,
		FarmCounted: rt.farm, FarmErrors: rt.server.Policy().FarmErrors(),
		State: st.Accept.State, Since: st.Accept.Since, StateErr: st.Accept.Err, Conns: st.Accept.Conns, MaxConns: rt.cfg.MaxConns,
		Full: st.Accept.Full, Refused: st.Refused, Holders: tables.Holders, Accounts: tables.Accounts, Dropped: tables.Dropped}
	for _, q := range rt.cfg.Settings.Quotas {
		out.Quotas = append(out.Quotas, control.PolicyQuota{Name: q.Name, Key: q.Key, Messages: q.Messages, Recipients: q.Recipients, Window: q.Window})
	}
	for _, h := range rt.server.Policy().Near(nearFraction, 20) {
		out.Near = append(out.Near, control.PolicyHolder{Quota: h.Quota, Holder: h.Holder, Messages: h.Messages, Recipients: h.Recipients})
	}
	rt.mu.Lock()
	for _, f := range rt.flagged {
		addrs := make([]string, len(f.Addresses))
		for i, a := range f.Addresses {
			addrs[i] = a.String()
		}
		out.Flagged = append(out.Flagged, control.PolicyFlag{Account: f.Account, Addrs: addrs, Networks: f.Networks, At: f.At})
	}
	rt.mu.Unlock()
	return out, nil
}

// nearFraction is how close to a quota's limit a holder is shown by status.
const nearFraction = 0.8
