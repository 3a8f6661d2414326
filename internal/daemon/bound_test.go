package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/logban/logban/internal/control"
)

// max_tracked bounds the jail's table of failing addresses: 1,500 addresses failing once
// leave at most 1,000 tracked, the rest let go and counted.
func TestMaxTrackedBoundsTheJail(t *testing.T) {
	h := start(t, strings.Replace(baseConfig, "maxretry = 3", "maxretry = 3\nmax_tracked = 1000", 1), Options{})
	var b strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&b, "%s mta1 postfix/submission/smtpd[4242]: warning: unknown[203.0.%d.%d]: SASL LOGIN authentication failed: x\n",
			time.Now().Format(time.Stamp), 113+i/256, i%256)
	}
	h.append(b.String())
	s := h.waitFor("sasl", func(s control.JailStatus) bool { return s.TotalFailed == 1500 })
	if s.MaxTracked != 1000 || s.CurrentlyFailed > 1000 || s.Evicted == 0 {
		t.Errorf("max_tracked 1000, 1,500 addresses: %d tracked, %d let go (status says max %d)", s.CurrentlyFailed, s.Evicted, s.MaxTracked)
	}
}
