package listener

import (
	"os"
	"testing"

	"github.com/logban/logban/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.ServeDialHelper()
	os.Exit(m.Run())
}
