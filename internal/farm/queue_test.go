package farm

import "testing"

// A queue keeps order, refuses past its bound, and lets a burst's memory go once drained.
func TestQueueIsBoundedAndLetsMemoryGo(t *testing.T) {
	q := newQueue[int](3000)
	for i := range 3001 {
		if ok := q.push(i); ok != (i < 3000) {
			t.Fatalf("push %d: %v", i, ok)
		}
	}
	for want := range 3000 {
		if got, ok := q.pop(); !ok || got != want {
			t.Fatalf("pop: %d, %v; want %d", got, ok, want)
		}
		if want == 2000 && cap(q.items) > 2000 {
			t.Errorf("after 2000 of 3000 popped the queue holds room for %d", cap(q.items))
		}
	}
	if _, ok := q.pop(); ok || cap(q.items) > 1024 {
		t.Errorf("a drained queue holds %d items' room", cap(q.items))
	}
}
