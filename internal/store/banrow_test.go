package store

import (
	"context"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/logban/logban/actions"
	"github.com/logban/logban/jails"
)

// A ban's text comes back as it went in, whatever it holds: an account named by an
// attacker with colons, digits, newlines, a NUL and bytes that are not UTF-8; lines
// with colons; empty texts; no expiry; a network. Read whole (Bans) and without lines
// (EachBan), as a restore reads them.
func TestBansReadBackWhateverTheirText(t *testing.T) {
	ctx := context.Background()
	s := tempStore(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	want := []jails.Record{
		{Ban: actions.Ban{Jail: "sasl", Addr: netip.MustParseAddr("203.0.113.5"), Failures: 3, BannedAt: t0, Expires: t0.Add(time.Hour),
			By: "mta1", Why: "3 failures", User: "12:ab:\n3:x-:", Lines: []string{"a: 5:b", "", "-:"}}, Count: 2},
		{Ban: actions.Ban{Jail: "dos", Addr: netip.MustParseAddr("2001:db8::5"), BannedAt: t0, User: "-:\x00\xff:1"}, Count: 1},
		{Ban: actions.Ban{Jail: "j:1", Addr: netip.MustParseAddr("198.51.100.0"), Bits: 24, Failures: 40, BannedAt: t0, Expires: t0.Add(time.Minute),
			Why: strings.Repeat("é:", 300)}, Count: 7},
	}
	if err := s.SaveBans(ctx, want); err != nil {
		t.Fatal(err)
	}
	byJail := func(x, y jails.Record) int { return strings.Compare(x.Jail, y.Jail) }
	slices.SortFunc(want, byJail)
	got, err := s.Bans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, byJail)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Bans:\n got %+v\nwant %+v", got, want)
	}
	var each []jails.Record
	for r, err := range s.EachBan(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		each = append(each, r)
	}
	slices.SortFunc(each, byJail)
	for i := range want {
		want[i].Lines = nil
	}
	if !reflect.DeepEqual(each, want) {
		t.Errorf("EachBan:\n got %+v\nwant %+v", each, want)
	}
}

// A packed row that is not one (cut short, a length past its end, a number that is
// none) is an error, never a panic or a ban made of the wrong fields.
func FuzzUnpackBan(f *testing.F) {
	for _, seed := range []string{
		"4:sasl11:203.0.113.520:2026-12-07T10:00:00Z20:2026-12-07T11:00:00Z3:1:4:mta110:3 failures2:[]0:",
		"3:dos11:2001:db8::520:2026-12-07T10:00:00Z-:0:1:0:0:0:0:",
		"", ":", "-:", "99999999999999999999:", "4:sa", "-1:x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, packed string) {
		unpackBan(packed) //nolint:errcheck // it must only return
	})
}

// A restored ban holds no part of the row it was read from: a text cut from the row
// would keep all of it in memory for as long as the ban lasts. Bans of one jail share
// its name, and those one node decided share the node's.
func TestRestoredBansHoldNoRow(t *testing.T) {
	ctx := context.Background()
	s := tempStore(t)
	t0 := time.Now()
	var records []jails.Record
	for i := range 3 {
		records = append(records, jails.Record{Ban: actions.Ban{Jail: "sasl", Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}),
			Failures: 3, BannedAt: t0, Expires: t0.Add(time.Hour), By: "mta1", Why: "3 failures", User: "bob"}, Count: 1})
	}
	if err := s.SaveBans(ctx, records); err != nil {
		t.Fatal(err)
	}
	var got []jails.Record
	for r, err := range s.EachBan(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 3 {
		t.Fatalf("%d bans read, want 3", len(got))
	}
	for _, r := range got[1:] {
		if unsafe.StringData(r.Jail) != unsafe.StringData(got[0].Jail) || unsafe.StringData(r.By) != unsafe.StringData(got[0].By) {
			t.Errorf("%s: its jail and node names are its own, not shared", r.Addr)
		}
	}

	packed := "4:sasl11:203.0.113.520:2026-12-07T10:00:00Z20:2026-12-07T11:00:00Z3:1:4:mta110:3 failures2:[]3:bob"
	r, err := unpackBan(packed)
	if err != nil {
		t.Fatal(err)
	}
	rowTexts{}.own(&r)
	start := uintptr(unsafe.Pointer(unsafe.StringData(packed)))
	for name, text := range map[string]string{"jail": r.Jail, "by": r.By, "why": r.Why, "user": r.User} {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(text))); p >= start && p < start+uintptr(len(packed)) {
			t.Errorf("the %s %q is cut from the row", name, text)
		}
	}
}
