package daemon

import (
	"os"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.ServeDialHelper() // testenv.DialAs's child: a local user's connection
	os.Exit(m.Run())
}
