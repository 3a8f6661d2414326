// Command testsummary reads the events of `go test -json` on standard input and prints
// what `go test` would (each package's result line, and the whole output of every test
// that failed), then one line more: how many tests were skipped, and why. .ci/run
// pipes its test run through it, so that a skip is never silent.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	if err := summarize(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
}

func summarize(in io.Reader, out io.Writer) error {
	type key struct{ pkg, test string }
	less := func(a, b key) int { return cmp.Or(cmp.Compare(a.pkg, b.pkg), cmp.Compare(a.test, b.test)) }
	outputs := map[key][]string{}
	reasons := map[string]int{} // why tests were skipped, by reason
	skipped := 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(out, sc.Text()) // not an event: a build error, say
			continue
		}
		k := key{e.Package, e.Test}
		switch {
		case e.Action == "build-output": // a package that does not compile
			fmt.Fprint(out, e.Output)
		case e.Test == "" && e.Action == "fail":
			// A test binary that died (a panic, a timeout) leaves its running tests
			// unended: their output is the story.
			for _, t := range slices.SortedFunc(maps.Keys(outputs), less) {
				if t.pkg == e.Package {
					fmt.Fprint(out, strings.Join(outputs[t], ""))
					delete(outputs, t)
				}
			}
		case e.Test == "" && e.Action == "output":
			if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS\n") && !strings.HasPrefix(e.Output, "--- PASS") {
				fmt.Fprint(out, e.Output) // ok, FAIL, ? and panics of the package
			}
		case e.Action == "output":
			outputs[k] = append(outputs[k], e.Output)
		case e.Action == "fail":
			fmt.Fprint(out, strings.Join(outputs[k], ""))
			delete(outputs, k)
		case e.Action == "skip" && e.Test != "":
			skipped++
			reasons[skipReason(outputs[k])]++
			delete(outputs, k)
		case e.Action == "pass":
			delete(outputs, k)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if skipped == 0 {
		fmt.Fprintln(out, "no test skipped")
		return nil
	}
	why := slices.SortedFunc(maps.Keys(reasons), func(a, b string) int { return cmp.Compare(reasons[b], reasons[a]) })
	for i, r := range why {
		why[i] = fmt.Sprintf("%s (%d)", r, reasons[r])
	}
	fmt.Fprintf(out, "%d tests skipped: %s\n", skipped, strings.Join(why, "; "))
	return nil
}

// skipReason returns what a skipped test said last: the t.Skip message.
func skipReason(output []string) string {
	for i := len(output) - 1; i >= 0; i-- {
		line := strings.TrimSpace(output[i])
		if _, msg, ok := strings.Cut(line, ".go:"); ok && !strings.HasPrefix(line, "---") {
			if _, msg, ok = strings.Cut(msg, ": "); ok {
				return msg
			}
		}
	}
	return "no reason given"
}
