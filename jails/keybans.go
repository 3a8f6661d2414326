package jails

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// KeyBan is the ban of a key no firewall can hold: an account or a device that reached
// a jail's maxretry within findtime. The actions that hold no address (log, mail,
// webhook, exec) hear of it and of its end as notices; the addresses seen with the key
// are banned apart, as any address, where the jail says ban_addresses.
type KeyBan struct {
	Jail string
	Kind string // KeyUser or KeyDevice
	Key  string // the account or device, as the client sent it
	// User is the account a device's lines last named ("" if none); for an account,
	// the account.
	User string
	// Addrs are the addresses seen with the key within findtime, oldest first.
	Addrs    []netip.Addr
	Count    int // failures (or requests) within findtime
	BannedAt time.Time
	Expires  time.Time // the zero time: until lifted by hand
}

// Permanent reports whether the ban lasts until it is lifted by hand.
func (b KeyBan) Permanent() bool { return b.Expires.IsZero() }

// Why says what led to the ban, in words.
func (b KeyBan) Why(findTime time.Duration) string {
	what := "failures"
	if b.Kind == KeyDevice {
		what = "requests"
	}
	return fmt.Sprintf("%s %s: %d %s within %s, from %d addresses", b.Kind, b.Key, b.Count, what, findTime, len(b.Addrs))
}

// keyBanID names a key ban: its jail, kind and key.
type keyBanID struct{ jail, kind, key string }

func (b KeyBan) id() keyBanID { return keyBanID{b.Jail, b.Kind, b.Key} }

// KeyBans are the bans of accounts and devices in force, and those to record: a key
// ban is recorded before the file positions past the lines that made it, as the logins
// that worked are, so a crash loses none. It is safe for concurrent use.
type KeyBans struct {
	mu      sync.Mutex
	bans    map[keyBanID]KeyBan
	saves   map[keyBanID]KeyBan // made or changed since the last Unsaved
	deletes map[keyBanID]bool   // ended since the last Unsaved
}

// NewKeyBans returns an empty KeyBans.
func NewKeyBans() *KeyBans {
	return &KeyBans{bans: map[keyBanID]KeyBan{}, saves: map[keyBanID]KeyBan{}, deletes: map[keyBanID]bool{}}
}

// Ban puts b in force and reports whether it is new: a key banned already keeps its ban.
func (k *KeyBans) Ban(b KeyBan) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := b.id()
	if _, ok := k.bans[id]; ok {
		return false
	}
	k.bans[id] = b
	k.saves[id] = b
	delete(k.deletes, id)
	return true
}

// Unban lifts the ban of key of kind in jail and returns it; ok is false if there was
// none.
func (k *KeyBans) Unban(jail, kind, key string) (b KeyBan, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lift(keyBanID{jail, kind, key})
}

func (k *KeyBans) lift(id keyBanID) (KeyBan, bool) {
	b, ok := k.bans[id]
	if ok {
		delete(k.bans, id)
		delete(k.saves, id)
		k.deletes[id] = true
	}
	return b, ok
}

// Expire lifts the bans that end at or before now and returns them.
func (k *KeyBans) Expire(now time.Time) []KeyBan {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []KeyBan
	for id, b := range k.bans {
		if !b.Permanent() && !b.Expires.After(now) {
			k.lift(id)
			out = append(out, b)
		}
	}
	SortKeyBans(out)
	return out
}

// List returns the bans in force of jail ("" for every jail), by jail, kind and key.
func (k *KeyBans) List(jail string) []KeyBan {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []KeyBan
	for _, b := range k.bans {
		if jail == "" || b.Jail == jail {
			out = append(out, b)
		}
	}
	SortKeyBans(out)
	return out
}

// SortKeyBans sorts bans by jail, kind and key.
func SortKeyBans(bs []KeyBan) {
	slices.SortFunc(bs, func(a, b KeyBan) int {
		return cmp.Or(cmp.Compare(a.Jail, b.Jail), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key))
	})
}

// KeyBanChanges are the key bans to record and those to forget.
type KeyBanChanges struct {
	Saves   []KeyBan
	Deletes []KeyBan // Jail, Kind and Key set
}

// Unsaved returns the changes since the last call, and forgets them: give them back
// with Unsave if recording them failed.
func (k *KeyBans) Unsaved() KeyBanChanges {
	k.mu.Lock()
	defer k.mu.Unlock()
	var c KeyBanChanges
	for _, b := range k.saves {
		c.Saves = append(c.Saves, b)
	}
	for id := range k.deletes {
		c.Deletes = append(c.Deletes, KeyBan{Jail: id.jail, Kind: id.kind, Key: id.key})
	}
	k.saves, k.deletes = map[keyBanID]KeyBan{}, map[keyBanID]bool{}
	return c
}

// Unsave gives back changes Unsaved returned and that were not recorded; a change made
// since wins.
func (k *KeyBans) Unsave(c KeyBanChanges) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range c.Saves {
		id := b.id()
		if _, now := k.bans[id]; now && !k.deletes[id] {
			if _, newer := k.saves[id]; !newer {
				k.saves[id] = k.bans[id]
			}
		}
	}
	for _, b := range c.Deletes {
		id := b.id()
		if _, banned := k.bans[id]; !banned {
			k.deletes[id] = true
		}
	}
}

// Empty reports whether there are no changes to record.
func (c KeyBanChanges) Empty() bool { return len(c.Saves) == 0 && len(c.Deletes) == 0 }

// Load puts recorded bans in force, as a restart does; those that ended while the
// daemon was stopped are returned, and recorded as ended at the next Unsaved.
func (k *KeyBans) Load(bans []KeyBan, now time.Time) (ended []KeyBan) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, b := range bans {
		if !b.Permanent() && !b.Expires.After(now) {
			k.deletes[b.id()] = true
			ended = append(ended, b)
			continue
		}
		k.bans[b.id()] = b
	}
	SortKeyBans(ended)
	return ended
}
