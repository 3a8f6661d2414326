package actions

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/netnstest"
)

// BenchmarkKernelBans bans then unbans 10,000 addresses (from 198.18.0.0/15, the range
// set aside for benchmarks) through route, ipset and nftables, in a namespace, one call
// at a time and (-batch) in batches, and reports bans/s and unbans/s.
func BenchmarkKernelBans(b *testing.B) {
	const n = 10_000
	addrs := make([]netip.Addr, n)
	base := netip.MustParseAddr("198.18.0.0").As4()
	for i := range addrs {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		addrs[i] = netip.AddrFrom4(a)
	}
	kinds := map[string]func() Action{
		"route": func() Action {
			return NewRoute(RouteOptions{Type: "blackhole", Table: 254, Protocol: DefaultRouteProtocol}, quiet)
		},
		"ipset":    func() Action { return NewIPSet(defaultFirewallOptions(), quiet) },
		"nftables": func() Action { return NewNFTables("nftables", defaultNFTablesOptions(), quiet) },
	}
	bans := bansOf(addrs, "bench")
	for _, name := range []string{"route", "ipset", "nftables", "route-batch", "ipset-batch", "nftables-batch"} {
		kind, batched := strings.CutSuffix(name, "-batch")
		b.Run(name, func(b *testing.B) {
			lab := netnstest.New(b)
			ctx := context.Background()
			var banTime, unbanTime time.Duration
			for b.Loop() {
				a := kinds[kind]()
				lab.Do(func() {
					if err := a.Start(ctx); err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					if batched {
						noErrors(b, "ban batch", a.(Batcher).BanBatch(ctx, bans))
					} else {
						for _, ban := range bans {
							if err := a.Ban(ctx, ban); err != nil {
								b.Fatal(err)
							}
						}
					}
					banTime += time.Since(start)
					start = time.Now()
					if batched {
						noErrors(b, "unban batch", a.(Batcher).UnbanBatch(ctx, bans))
					} else {
						for _, ban := range bans {
							if err := a.Unban(ctx, ban); err != nil {
								b.Fatal(err)
							}
						}
					}
					unbanTime += time.Since(start)
					a.Stop(ctx)
				})
			}
			b.ReportMetric(float64(n*b.N)/banTime.Seconds(), "bans/s")
			b.ReportMetric(float64(n*b.N)/unbanTime.Seconds(), "unbans/s")
		})
	}
}
