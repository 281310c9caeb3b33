//go:build unix

package phpfake

import (
	"os/exec"
	"syscall"
)

// setGroup puts php in a process group of its own, so that signals reach
// the workers it forks (PHP_CLI_SERVER_WORKERS) too.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// interrupt asks php and its workers to stop. On SIGINT php -S stops
// serving and reaps its workers; after SIGKILL they would be left as
// zombies for init to reap.
func interrupt(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
}

// forceKill ends php and its workers at once.
func forceKill(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
