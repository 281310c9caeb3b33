//go:build unix

package shop

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive lock on a file in dir, so that two shops never
// share one data directory (the fake MLM Soft's state file must have one
// owner) at the same time. The lock ends with the process, or with unlock.
func lockDir(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another shop is running on this data directory (%s is locked); stop it or pick another -data", path)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
