package watcher

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// notifier shares one inotify instance among every follower of the process: a folder
// is watched once however many followers look into it, and each event is handed to the
// followers whose names it concerns. The kernel gives each user 128 instances
// (fs.inotify.max_user_instances); a glob of 300 logs must not take them all.
type notifier struct {
	mu   sync.Mutex
	w    *fsnotify.Watcher
	err  error                             // why there are no events, if NewWatcher failed
	dirs map[string]map[*subscription]bool // folder -> who watches it
}

// shared is the process's notifier, made at its first use.
var shared notifier

// subscription is one follower's interest: the folders and base names it watches.
// Events raise its flags and wake it; none is lost, and many coalesce into one wake.
type subscription struct {
	n     *notifier
	wake  chan struct{} // one pending wake at most
	mu    sync.Mutex
	dirs  []string
	names []string // base names whose events concern it (zimbra.log and its rotations)
	wrote bool     // a write to one of the names
	other bool     // anything else: create, remove, rename, chmod
	err   error    // the watcher's error, once
}

// subscribe returns a subscription, or an error if the process can have no inotify
// instance (then the follower checks on its interval).
func (n *notifier) subscribe() (*subscription, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.w == nil && n.err == nil {
		n.w, n.err = fsnotify.NewWatcher()
		if n.err == nil {
			n.dirs = map[string]map[*subscription]bool{}
			go n.dispatch(n.w)
		}
	}
	if n.err != nil {
		return nil, n.err
	}
	return &subscription{n: n, wake: make(chan struct{}, 1)}, nil
}

// watch sets the folders and names s concerns; folders no longer wanted by anyone are
// let go. It returns the errors of adding folders that exist.
func (s *subscription) watch(dirs, names []string) error {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	s.mu.Lock()
	old := s.dirs
	s.dirs, s.names = dirs, names
	s.mu.Unlock()
	var errs []error
	for _, d := range dirs {
		subs := n.dirs[d]
		if subs == nil {
			if err := n.w.Add(d); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
				continue
			}
			subs = map[*subscription]bool{}
			n.dirs[d] = subs
		}
		subs[s] = true
	}
	for _, d := range old {
		if !contains(dirs, d) {
			n.drop(d, s)
		}
	}
	return errors.Join(errs...)
}

// close ends s's interest in every folder.
func (s *subscription) close() {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	s.mu.Lock()
	dirs := s.dirs
	s.dirs = nil
	s.mu.Unlock()
	for _, d := range dirs {
		n.drop(d, s)
	}
}

// drop removes s from folder d's watchers, and the watch if it was the last. n.mu is
// held.
func (n *notifier) drop(d string, s *subscription) {
	subs := n.dirs[d]
	delete(subs, s)
	if len(subs) == 0 && subs != nil {
		delete(n.dirs, d)
		n.w.Remove(d) //nolint:errcheck // a folder gone is unwatched already
	}
}

// take returns and clears what happened since the last take.
func (s *subscription) take() (wrote, other bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wrote, other, err = s.wrote, s.other, s.err
	s.wrote, s.other, s.err = false, false, nil
	return
}

func (s *subscription) note(ev fsnotify.Event) {
	name := filepath.Base(ev.Name)
	s.mu.Lock()
	hit := false
	for _, n := range s.names {
		if strings.HasPrefix(name, n) {
			hit = true
			break
		}
	}
	if hit {
		s.wrote = true
		s.other = s.other || ev.Op&^fsnotify.Write != 0
	}
	s.mu.Unlock()
	if hit {
		s.poke()
	}
}

func (s *subscription) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.poke()
}

func (s *subscription) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatch hands each event to the subscriptions of its folder, and each error to all.
func (n *notifier) dispatch(w *fsnotify.Watcher) {
	var subs []*subscription
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			n.mu.Lock()
			subs = subs[:0]
			for s := range n.dirs[filepath.Dir(ev.Name)] {
				subs = append(subs, s)
			}
			n.mu.Unlock()
			for _, s := range subs {
				s.note(ev)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			n.mu.Lock()
			subs = subs[:0]
			for _, m := range n.dirs {
				for s := range m {
					subs = append(subs, s)
				}
			}
			n.mu.Unlock()
			for _, s := range subs {
				s.fail(err)
			}
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
