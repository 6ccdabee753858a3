//go:build !unix

package sandbox

import "errors"

func setNice(int) error { return errors.New("niceness is not supported on this platform") }
