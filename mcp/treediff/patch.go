package treediff

import (
	"bytes"
	"encoding/hex"
	"strings"
)

// quoteName writes prefix+name as git does with core.quotePath on
// (quote.c, quote_c_style): unchanged unless it holds a control
// character, '"', '\\', DEL or a byte >= 0x80; then in double quotes with
// \a \b \t \n \v \f \r \" \\ and three-digit octal for the other bytes.
func quoteName(prefix, name string) string {
	s := prefix + name
	if !needsQuote(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\v':
			b.WriteString(`\v`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		default:
			if c < 0x20 || c >= 0x7f {
				b.WriteByte('\\')
				b.WriteByte('0' + c>>6)
				b.WriteByte('0' + c>>3&7)
				b.WriteByte('0' + c&7)
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func needsQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return true
		}
	}
	return false
}

// side is one version of a path for the patch writer.
type side struct {
	e    *Entry // nil: the path does not exist on this side
	data []byte // file content or symlink target; valid unless big
	big  bool   // a file over Options.MaxFileBytes; data not read
	id   [20]byte
}

// gitID is git's name for the side's content; zero for a missing side.
func (s side) gitID() [20]byte {
	switch {
	case !s.exists():
		return [20]byte{}
	case s.e.Type == Symlink:
		return gitID(s.data)
	}
	return s.id
}

func (s side) exists() bool { return s.e != nil && s.e.Type != Dir }

// content reports whether the side has content for the patch: a
// non-empty file or a symlink.
func (s side) nonEmpty() bool {
	return s.exists() && (s.big || len(s.data) > 0)
}

// binary applies git's rule (a NUL byte in the first 8000 bytes), and
// treats files too big to read as binary.
func (s side) binary() bool {
	if !s.exists() {
		return false
	}
	if s.big {
		return true
	}
	return bytes.IndexByte(s.data[:min(len(s.data), 8000)], 0) >= 0
}

// patchStats is what writing one file's patch found.
type patchStats struct {
	ins, del int
	binary   bool
}

// writeBlock appends git's patch text turning old into new, two sides of
// the same path with the same kind (file or symlink), or one of them
// absent. changed says whether the content differs. It writes nothing when
// git would show nothing (a permission change git does not record).
func writeBlock(w *bytes.Buffer, path string, old, new side, changed bool, context int) patchStats {
	var st patchStats
	start := w.Len()
	aName, bName := quoteName("a/", path), quoteName("b/", path)
	w.WriteString("diff --git ")
	w.WriteString(aName)
	w.WriteByte(' ')
	w.WriteString(bName)
	w.WriteByte('\n')
	meta := w.Len()
	show := changed // whether there is content to show
	switch {
	case !old.exists():
		w.WriteString("new file mode ")
		w.WriteString(new.e.gitMode().String())
		w.WriteByte('\n')
		changed, show = true, new.nonEmpty()
	case !new.exists():
		w.WriteString("deleted file mode ")
		w.WriteString(old.e.gitMode().String())
		w.WriteByte('\n')
		changed, show = true, old.nonEmpty()
	case old.e.gitMode() != new.e.gitMode():
		w.WriteString("old mode ")
		w.WriteString(old.e.gitMode().String())
		w.WriteString("\nnew mode ")
		w.WriteString(new.e.gitMode().String())
		w.WriteByte('\n')
	}
	if !changed {
		if w.Len() == meta {
			w.Truncate(start)
		}
		return st
	}
	// Git writes the index line whenever the blob names differ, even
	// for an empty file added or deleted (e69de29 is the empty blob).
	w.WriteString("index ")
	a, b := old.gitID(), new.gitID()
	w.WriteString(hex.EncodeToString(a[:])[:7])
	w.WriteString("..")
	w.WriteString(hex.EncodeToString(b[:])[:7])
	if old.exists() && new.exists() && old.e.gitMode() == new.e.gitMode() {
		w.WriteByte(' ')
		w.WriteString(old.e.gitMode().String())
	}
	w.WriteByte('\n')
	if !show {
		return st
	}
	if !old.exists() {
		aName = "/dev/null"
	}
	if !new.exists() {
		bName = "/dev/null"
	}
	if old.binary() || new.binary() {
		st.binary = true
		w.WriteString("Binary files ")
		w.WriteString(aName)
		w.WriteString(" and ")
		w.WriteString(bName)
		w.WriteString(" differ\n")
		return st
	}
	w.WriteString("--- ")
	w.WriteString(aName)
	if strings.IndexByte(aName, ' ') >= 0 {
		w.WriteByte('\t')
	}
	w.WriteString("\n+++ ")
	w.WriteString(bName)
	if strings.IndexByte(bName, ' ') >= 0 {
		w.WriteByte('\t')
	}
	w.WriteByte('\n')
	var ta, tb []byte
	if old.exists() {
		ta = old.data
	}
	if new.exists() {
		tb = new.data
	}
	d := diffLines(ta, tb)
	d.writeHunks(w, context)
	st.ins, st.del = d.counts()
	return st
}
