package filters

import "net/netip"

// sampleTrustedProxies is the trusted_proxies the samples in builtin/testdata are read
// with: a load balancer in front of the farm's proxies (see the README there).
var sampleTrustedProxies = []netip.Prefix{netip.MustParsePrefix("198.51.100.250/32")}
