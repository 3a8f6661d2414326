package actions

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlinkSocket is a netlink handle opened on first use, in the network namespace of the
// thread that first uses it: every request then goes over its one socket, where
// netlink's package functions open and close a socket each. Beside it, a raw socket of
// the same family carries batches (send).
type netlinkSocket struct {
	proto int // unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER

	mu  sync.Mutex
	h   *netlink.Handle
	raw *nl.NetlinkSocket

	sending sync.Mutex   // one batch at a time on raw
	resent  atomic.Int64 // requests of batches sent again one at a time, their acks lost
}

// get returns the handle, opening it if need be.
func (s *netlinkSocket) get() (*netlink.Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(); err != nil {
		return nil, err
	}
	return s.h, nil
}

// open opens the handle and the raw socket, in the calling thread's namespace. Caller
// holds s.mu.
func (s *netlinkSocket) open() error {
	if s.h != nil {
		return nil
	}
	h, err := netlink.NewHandle(s.proto)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	raw, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), s.proto)
	if err != nil {
		h.Close()
		return fmt.Errorf("opening netlink: %w", err)
	}
	// A batch's answers (one per failed request, and the last request's ack) wait in
	// the receive buffer until the whole batch is handled; each takes about a kilobyte
	// of it, and a batch re-adding routes already there fails whole. Only root may grow
	// the buffer past the system's limit; a smaller one makes such batches fall back to
	// one request at a time, not fail.
	if err := raw.SetReceiveBufferSize(batchRcvBuf, true); err != nil {
		raw.SetReceiveBufferSize(batchRcvBuf, false) //nolint:errcheck // the default serves, slower
	}
	// Acks of failed requests carry the error alone, not the request echoed back.
	unix.SetsockoptInt(raw.GetFd(), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1) //nolint:errcheck // older kernels echo; the buffer still holds a batch
	raw.SetReceiveTimeout(&unix.Timeval{Sec: 5})                               //nolint:errcheck // always nil
	s.h, s.raw = h, raw
	return nil
}

// close closes the handle and the raw socket; the next get opens new ones.
func (s *netlinkSocket) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h != nil {
		s.h.Close()
		s.raw.Close()
		s.h, s.raw = nil, nil
	}
}

// batchMax is the most requests sent in one sendmsg, and batchRcvBuf the receive buffer
// that holds their answers.
const (
	batchMax    = 1024
	batchRcvBuf = 4 << 20
)

// send sends the requests, batchMax per sendmsg (sendBatch), and returns each
// request's error: nil, or the errno the kernel answered (an ipset error as
// nl.IPSetError). A request may be sent twice (when answers are lost): every request
// logban sends is idempotent, or its repeat's error is one the caller accepts.
func (s *netlinkSocket) send(reqs []*nl.NetlinkRequest) []error {
	errs := make([]error, len(reqs))
	s.mu.Lock()
	err := s.open()
	raw := s.raw
	s.mu.Unlock()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	s.sending.Lock()
	defer s.sending.Unlock()
	for start := 0; start < len(reqs); start += batchMax {
		end := min(start+batchMax, len(reqs))
		s.sendBatch(raw, reqs[start:end], errs[start:end])
	}
	return errs
}

// sendBatch sends one batch in one sendmsg and fills errs from the answers. Only the
// batch's last request asks for an ack: the kernel answers the others only when they
// fail (one recvmsg each, as costly as the request itself), and handles a batch in
// order, so once the last is answered every answer has come. If answers were lost (the
// receive buffer overflowed) or none came in time, the requests not known to have
// failed are sent again one at a time.
func (s *netlinkSocket) sendBatch(raw *nl.NetlinkSocket, reqs []*nl.NetlinkRequest, errs []error) {
	last := reqs[len(reqs)-1].Seq
	bySeq := make(map[uint32]int, len(reqs))
	var buf []byte
	for i, r := range reqs {
		bySeq[r.Seq] = i
		r.Flags &^= unix.NLM_F_ACK
		if r.Seq == last {
			r.Flags |= unix.NLM_F_ACK
		}
		buf = append(buf, r.Serialize()...)
	}
	if err := unix.Sendto(raw.GetFd(), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.oneByOne(raw, reqs, errs, bySeq)
		return
	}
	done := false
	take := func(msgs []syscall.NetlinkMessage) {
		for _, m := range msgs {
			i, ok := bySeq[m.Header.Seq]
			if !ok || m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			delete(bySeq, m.Header.Seq)
			errs[i] = ackError(m.Data)
			done = done || m.Header.Seq == last
		}
	}
	for !done {
		msgs, _, err := raw.Receive()
		if err != nil {
			// ENOBUFS: some answers were lost. The socket reports it before the answers
			// still queued, which are read first. Or no answer came in time.
			if take(queued(raw)); !done {
				s.oneByOne(raw, reqs, errs, bySeq)
			}
			return
		}
		take(msgs)
	}
}

// queued reads the messages waiting on the socket, without waiting for more.
func queued(raw *nl.NetlinkSocket) []syscall.NetlinkMessage {
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(raw.GetFd(), buf, unix.MSG_DONTWAIT)
		if err != nil || n < unix.NLMSG_HDRLEN {
			return out
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return out
		}
		out = append(out, msgs...)
	}
}

// oneByOne sends the requests whose outcome is unknown (in bySeq) one at a time, each
// waiting for its ack.
func (s *netlinkSocket) oneByOne(raw *nl.NetlinkSocket, reqs []*nl.NetlinkRequest, errs []error, bySeq map[uint32]int) {
	for _, i := range bySeq {
		reqs[i].Flags |= unix.NLM_F_ACK
		errs[i] = sendOne(raw, reqs[i])
		s.resent.Add(1)
	}
}

// sendOne sends one request and waits for its ack.
func sendOne(raw *nl.NetlinkSocket, r *nl.NetlinkRequest) error {
	if err := raw.Send(r); err != nil {
		return err
	}
	for {
		msgs, _, err := raw.Receive()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq == r.Seq && m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
				return ackError(m.Data)
			}
		}
	}
}

// ackError reads the error of an NLMSG_ERROR message's payload: nil for an ack.
func ackError(data []byte) error {
	errno := -int32(binary.NativeEndian.Uint32(data[:4]))
	switch {
	case errno == 0:
		return nil
	case errno >= nl.IPSET_ERR_PRIVATE:
		return nl.IPSetError(uintptr(errno))
	}
	return syscall.Errno(errno)
}
