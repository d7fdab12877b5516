package astranet

import (
	"errors"
	"net"
	"syscall"
)

// Error is a failure reported by libastranet: the operation, the library's result code
// (ASTRANET_ERR_*) and its message. It is a net.Error; errors.Is matches it against the
// errno of the same meaning (syscall.ECONNREFUSED for a refused dial, ETIMEDOUT, …).
type Error struct {
	Op   string
	Code int
	Msg  string
}

// The result codes of libastranet (include/astranet.h), for comparing with Error.Code.
const (
	codeAgain          = 1
	CodeInvalidArg     = 2
	CodeBadHandle      = 3
	CodeClosed         = 4
	CodeRefused        = 5
	CodeTimedOut       = 6
	CodeNoRoute        = 7
	CodeLinkClosed     = 8
	CodeReset          = 9
	CodeAborted        = 10
	CodeBrokenPipe     = 11
	CodeProtocol       = 12
	CodeLimitExceeded  = 13
	CodeInvalidTarget  = 14
	CodeAddrInUse      = 15
	CodeNodeClosed     = 16
	CodeListenerClosed = 17
	CodeIO             = 18
	CodeForked         = 19
	CodePanic          = 20
	CodeOther          = 21
	CodeNoSuchService  = 22
	CodeResolve        = 23
)

func (e *Error) Error() string { return "astranet " + e.Op + ": " + e.Msg }

// Timeout reports whether the operation ran out of time.
func (e *Error) Timeout() bool { return e.Code == CodeTimedOut }

// Temporary is false: retrying the same call does not help (net.Error's deprecated method).
func (e *Error) Temporary() bool { return false }

// Unwrap gives the errno of the same meaning, so that errors.Is(err, syscall.ECONNREFUSED)
// and the like hold.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeRefused:
		return syscall.ECONNREFUSED
	case CodeTimedOut:
		return syscall.ETIMEDOUT
	case CodeNoRoute:
		return syscall.EHOSTUNREACH
	case CodeLinkClosed:
		return syscall.ECONNABORTED
	case CodeReset, CodeAborted:
		return syscall.ECONNRESET
	case CodeBrokenPipe:
		return syscall.EPIPE
	case CodeInvalidArg, CodeInvalidTarget:
		return syscall.EINVAL
	case CodeAddrInUse:
		return syscall.EADDRINUSE
	case CodeClosed, CodeBadHandle, CodeNodeClosed, CodeListenerClosed:
		return net.ErrClosed
	case CodeNoSuchService, CodeResolve:
		return syscall.ENOENT
	}
	return nil
}

var _ net.Error = (*Error)(nil)

// isCode reports whether err is an *Error with this code.
func isCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
