package astranet

/*
#cgo pkg-config: astranet
#include <stdint.h>
#include <stdlib.h>
#include <astranet.h>

*/
import "C"

import "unsafe"

// callErr turns a result code and its optional error object into a Go error (nil for
// ASTRANET_OK), freeing the object.
func callErr(op string, r C.astranet_result, e *C.astranet_error) error {
	if r == C.ASTRANET_OK {
		if e != nil {
			C.astranet_error_free(e)
		}
		return nil
	}
	msg := ""
	if e != nil {
		msg = C.GoString(C.astranet_error_message(e))
		C.astranet_error_free(e)
	}
	if msg == "" {
		msg = C.GoString(C.astranet_result_name(C.uint32_t(r)))
	}
	return &Error{Op: op, Code: int(r), Msg: msg}
}

func cstring(s string) *C.char { return C.CString(s) }

func free(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}
