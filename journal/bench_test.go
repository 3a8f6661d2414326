package journal

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/logban/logban/watcher"
)

// BenchmarkEntriesToBatches decodes journalctl's export format and lays the entries out
// as lines in batches, as Run does; it allocates nothing per entry.
func BenchmarkEntriesToBatches(b *testing.B) {
	var export bytes.Buffer
	const n = 10_000
	for i := range n {
		fmt.Fprintf(&export, "__CURSOR=s=11b4991fdfbe4e3d9bb562d88a29e47b;i=%x;b=0123;m=%x;t=662086a59be47;x=59ad9cdf1e6a1ebf\n"+
			"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=mta1\n"+
			"SYSLOG_IDENTIFIER=postfix/submission/smtpd\n_PID=4242\n_COMM=smtpd\n_SYSTEMD_UNIT=postfix@-.service\nPRIORITY=4\n"+
			"MESSAGE=warning: unknown[203.0.113.%d]: SASL LOGIN authentication failed: UGFzc3dvcmQ6\n\n",
			i+1, i+1, 1796637600000000+i, i+1, i%256)
	}
	data := export.Bytes()
	f := &Follower{opts: Options{MaxLineSize: watcher.DefaultMaxLineSize, BatchSize: 1024, Location: time.UTC}}
	var offset int64
	lines := 0
	bt := batcher{f: f, handle: func(b watcher.Batch) { lines += len(b.Lines) }, offset: &offset}
	r := bytes.NewReader(data)
	d := decoder{r: bufio.NewReaderSize(r, 256<<10), maxValue: f.opts.MaxLineSize}
	var e entry
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(data)
		d.r.Reset(r)
		for d.next(&e) == nil {
			bt.add(&e)
			if len(bt.lines) >= 1024 {
				bt.emit()
			}
		}
		bt.emit()
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "entries/s")
}
