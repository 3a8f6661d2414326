package farm

import (
	"context"
	"sync"
)

// queue is a bounded first-in first-out queue that holds memory only while it holds
// items: a burst grows it, up to its bound, and it lets the memory go once drained. A
// channel of the same bound would hold it for the life of the process.
type queue[T any] struct {
	bound int
	ready chan struct{} // a receiver may find an item

	mu    sync.Mutex
	items []T
	head  int
}

func newQueue[T any](bound int) *queue[T] {
	return &queue[T]{bound: bound, ready: make(chan struct{}, 1)}
}

// push adds v, unless the queue holds its bound already; it never waits.
func (q *queue[T]) push(v T) bool {
	q.mu.Lock()
	if len(q.items)-q.head >= q.bound {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	q.wake()
	return true
}

// pop takes the oldest item, if any.
func (q *queue[T]) pop() (v T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.items) {
		return v, false
	}
	v = q.items[q.head]
	var zero T
	q.items[q.head] = zero
	q.head++
	switch {
	case q.head == len(q.items): // drained: a large backing array goes
		if cap(q.items) > 1024 {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	case q.head >= 1024 && q.head*2 >= len(q.items): // the front half is spent
		q.items = append(q.items[:0:0], q.items[q.head:]...)
		q.head = 0
	}
	if q.head < len(q.items) {
		q.wake() // another receiver may take the next
	}
	return v, true
}

// next waits for the oldest item and takes it; ok is false once ctx is done.
func (q *queue[T]) next(ctx context.Context) (v T, ok bool) {
	for ctx.Err() == nil {
		if v, ok = q.pop(); ok {
			return v, true
		}
		select {
		case <-ctx.Done():
		case <-q.ready:
		}
	}
	return v, false
}

func (q *queue[T]) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
