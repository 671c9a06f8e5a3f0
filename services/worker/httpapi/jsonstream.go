package httpapi

import (
	"bufio"
	"strconv"
	"unicode/utf8"

	"github.com/opensandbox/opensandbox/services/worker/sandbox"
)

// bufferedAnswer is the output size up to which a command's answer is
// built whole and sent with its length; larger answers stream.
const bufferedAnswer = 64 << 10

// writeResultJSON writes a ProcessResult as JSON while its output streams
// from the agent, so that a large output never sits whole in the worker
// (as bytes, or six times over as escaped JSON). It decodes exactly like
// encoding/json's encoding of the same result.
func writeResultJSON(w *bufio.Writer, r *sandbox.ExecResult) error {
	w.WriteString(`{"exitCode":`)
	w.WriteString(strconv.Itoa(r.ExitCode))
	w.WriteString(`,"stdout":"`)
	out := &jsonString{w: w}
	errOut := &jsonString{w: w}
	onStderr := false
	toStderr := func() {
		if !onStderr {
			out.finish()
			w.WriteString(`","stderr":"`)
			onStderr = true
		}
	}
	stderr := writerFunc(func(p []byte) (int, error) { toStderr(); return errOut.Write(p) })
	if err := r.WriteOutput(out, stderr); err != nil {
		return err
	}
	toStderr()
	errOut.finish()
	w.WriteByte('"')
	for _, f := range []struct {
		name string
		on   bool
	}{{"stdoutTruncated", r.StdoutTruncated}, {"stderrTruncated", r.StderrTruncated}, {"timedOut", r.TimedOut}, {"oomKilled", r.OOMKilled}} {
		if f.on {
			w.WriteString(`,"` + f.name + `":true`)
		}
	}
	w.WriteString(`,"durationMs":`)
	w.WriteString(strconv.FormatInt(r.DurationMs, 10))
	w.WriteByte('}')
	return w.Flush()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// jsonString escapes bytes into the inside of a JSON string as they come:
// invalid UTF-8 becomes U+FFFD and <, >, & and U+2028/9 are escaped, as
// encoding/json does. A rune cut by the end of one write is completed by
// the next.
type jsonString struct {
	w       *bufio.Writer
	pending []byte // the start of a rune cut by the end of the last write
}

func (j *jsonString) Write(p []byte) (int, error) {
	n := len(p)
	if len(j.pending) > 0 {
		buf := append(j.pending, p[:min(utf8.UTFMax, len(p))]...)
		if !utf8.FullRune(buf) {
			j.pending = buf
			return n, nil
		}
		_, size := utf8.DecodeRune(buf)
		if size < len(j.pending) {
			// The cut rune was invalid: escape its first byte and
			// start over with the rest of it followed by p.
			rest := append(append([]byte{}, j.pending[size:]...), p...)
			j.escape(buf[:size])
			j.pending = nil
			_, err := j.Write(rest)
			return n, err
		}
		j.escape(buf[:size])
		p = p[size-len(j.pending):]
		j.pending = nil
	}
	cut := len(p)
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		if b := p[len(p)-k]; b < utf8.RuneSelf || utf8.RuneStart(b) {
			if !utf8.FullRune(p[len(p)-k:]) {
				cut = len(p) - k
			}
			break
		}
	}
	j.escape(p[:cut])
	j.pending = append(j.pending[:0:0], p[cut:]...)
	return n, nil
}

// finish escapes a rune still cut at the very end: it is invalid.
func (j *jsonString) finish() {
	j.escape(j.pending)
	j.pending = nil
}

const hexDigits = "0123456789abcdef"

func (j *jsonString) escape(p []byte) {
	w := j.w
	start := 0
	for i := 0; i < len(p); {
		b := p[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			w.Write(p[start:i])
			switch b {
			case '"', '\\':
				w.WriteByte('\\')
				w.WriteByte(b)
			case '\n':
				w.WriteString(`\n`)
			case '\r':
				w.WriteString(`\r`)
			case '\t':
				w.WriteString(`\t`)
			case '\b':
				w.WriteString(`\b`)
			case '\f':
				w.WriteString(`\f`)
			default:
				w.WriteString(`\u00`)
				w.WriteByte(hexDigits[b>>4])
				w.WriteByte(hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			w.Write(p[start:i])
			w.WriteString(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			w.Write(p[start:i])
			w.WriteString(`\u202`)
			w.WriteByte(hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	w.Write(p[start:])
}
