package watcher

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/nxadm/tail"
)

// benchLines returns n zimbra.log lines of realistic length (about 160 bytes).
func benchLines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "Mar  5 16:00:%02d mta1 postfix/submission/smtpd[%d]: warning: unknown[203.0.113.%d]: SASL LOGIN authentication failed: UGFzc3dvcmQ6 seq=%d\n",
			i%60, 1000+i%30000, i%250, i)
	}
	return b.Bytes()
}

// appendAtFullSpeed writes data to path in 64 KiB writes, as fast as it can.
func appendAtFullSpeed(b *testing.B, path string, data []byte) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Error(err)
		return
	}
	defer f.Close()
	for len(data) > 0 {
		n := min(len(data), 64<<10)
		if _, err := f.Write(data[:n]); err != nil {
			b.Error(err)
			return
		}
		data = data[n:]
	}
}

// BenchmarkFollowAppended measures lines handed on per second from a file appended at
// full speed, with nxadm/tail on the same data as the reference.
func BenchmarkFollowAppended(b *testing.B) {
	const n = 1_000_000
	data := benchLines(n)
	b.Run("logban", func(b *testing.B) {
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "zimbra.log")
			os.WriteFile(path, nil, 0o644)
			fw, err := Open(path, Options{Start: FromBeginning})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var count atomic.Int64
			done := make(chan struct{})
			go fw.Run(ctx, func(batch Batch) {
				if count.Add(int64(len(batch.Lines))) == n {
					close(done)
				}
			})
			go appendAtFullSpeed(b, path, data)
			<-done
			cancel()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
		b.SetBytes(int64(len(data)))
	})
	b.Run("nxadm-tail", func(b *testing.B) {
		for b.Loop() {
			path := filepath.Join(b.TempDir(), "zimbra.log")
			os.WriteFile(path, nil, 0o644)
			t, err := tail.TailFile(path, tail.Config{Follow: true, ReOpen: true, Poll: true, Logger: tail.DiscardingLogger})
			if err != nil {
				b.Fatal(err)
			}
			go appendAtFullSpeed(b, path, data)
			for range n {
				<-t.Lines
			}
			t.Stop()
			t.Cleanup()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
		b.SetBytes(int64(len(data)))
	})
}
