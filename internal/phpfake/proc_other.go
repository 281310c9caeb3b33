//go:build !unix

package phpfake

import "os/exec"

// setGroup does nothing: php -S runs a single process on this system.
func setGroup(*exec.Cmd) {}

// interrupt ends php.
func interrupt(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}

// forceKill ends php.
func forceKill(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}
