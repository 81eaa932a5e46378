package patch

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Op says what a file patch, or a Change, does to a file.
type Op int

// The operations. A Change is only ever OpAdd, OpModify or OpDelete: Apply
// turns renames and copies into those.
const (
	OpModify Op = iota + 1
	OpAdd
	OpDelete
	OpRename
	OpCopy
)

func (o Op) String() string {
	switch o {
	case OpModify:
		return "modify"
	case OpAdd:
		return "add"
	case OpDelete:
		return "delete"
	case OpRename:
		return "rename"
	case OpCopy:
		return "copy"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// LineKind is the first byte of a hunk body line.
type LineKind byte

// The kinds of hunk body line.
const (
	LineContext LineKind = ' '
	LineRemoved LineKind = '-'
	LineAdded   LineKind = '+'
)

// Line is one line of a hunk body.
type Line struct {
	Kind LineKind
	// Text is the line without its kind byte and line ending.
	Text string
	// CRLF is set when the patch line ended in CRLF but its hunk header did
	// not, so the CR belongs to the content. It decides the line ending of
	// lines added to a new or empty file; see the package doc.
	CRLF bool
}

// Hunk is one "@@ -l,s +l,s @@" section.
type Hunk struct {
	OldStart, OldLines int
	NewStart, NewLines int
	// Section is the text after the closing "@@", usually a function name.
	Section string
	Lines   []Line
	// OldNoEOL and NewNoEOL record "\ No newline at end of file" after the
	// hunk's last old-side and new-side line.
	OldNoEOL, NewNoEOL bool
	// PatchLine is the 1-based line of the hunk header in the patch.
	PatchLine int

	header string // the header as written, up to the closing "@@"
}

// Header returns the hunk header as the patch wrote it, without the section
// text, e.g. "@@ -40,6 +40,7 @@".
func (h *Hunk) Header() string {
	if h.header != "" {
		return h.header
	}
	return fmt.Sprintf("@@ -%s +%s @@", rangeString(h.OldStart, h.OldLines), rangeString(h.NewStart, h.NewLines))
}

func rangeString(start, n int) string {
	if n == 1 {
		return strconv.Itoa(start)
	}
	return strconv.Itoa(start) + "," + strconv.Itoa(n)
}

// FilePatch is the part of a patch that concerns one file.
type FilePatch struct {
	Op Op
	// OldPath is the file the patch reads (empty for OpAdd) and NewPath the
	// file it writes (empty for OpDelete); both are for OpModify. Paths are
	// clean and relative to the workspace root (see CleanPath).
	OldPath, NewPath string
	// OldMode and NewMode are the permission bits git's mode lines state,
	// 0644 or 0755; zero where the patch states none.
	OldMode, NewMode fs.FileMode
	Hunks            []Hunk
	// PatchLine is the 1-based line in the patch where the file's header
	// starts.
	PatchLine int
}

// Path is the path the file patch is known by: NewPath, or OldPath for a
// deletion.
func (p *FilePatch) Path() string {
	if p.Op == OpDelete {
		return p.OldPath
	}
	return p.NewPath
}

// ErrBinary is wrapped by the error Parse returns for a binary patch.
var ErrBinary = errors.New("binary patches are not supported; write the file with file_write instead")

// ParseError is the error Parse returns: where in the patch, and what was
// expected there.
type ParseError struct {
	Line int // 1-based line in the patch; 0 when the error concerns no line
	Msg  string
	Err  error // an underlying error such as ErrBinary or ErrInvalidPath, or nil
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return "patch: " + e.Msg
	}
	return fmt.Sprintf("patch line %d: %s", e.Line, e.Msg)
}

func (e *ParseError) Unwrap() error { return e.Err }

// Limits keep line arithmetic far from overflow; no real file comes near.
const maxLineNumber = 1 << 30

const devNull = "/dev/null"

// Parse parses a unified diff, plain or git-style, into one FilePatch per
// file section, in patch order. The accepted dialect is described in the
// package doc. Errors are *ParseError.
func Parse(patch []byte) ([]FilePatch, error) {
	p := &parser{lines: splitPatch(patch)}
	var out []FilePatch
	for p.i < len(p.lines) {
		l := p.lines[p.i].text
		switch {
		case strings.HasPrefix(l, "diff --git "):
			fp, err := p.gitFile()
			if err != nil {
				return nil, err
			}
			out = append(out, fp)
		case strings.HasPrefix(l, "--- ") && p.i+1 < len(p.lines) && strings.HasPrefix(p.lines[p.i+1].text, "+++ "):
			fp, err := p.plainFile()
			if err != nil {
				return nil, err
			}
			out = append(out, fp)
		case isBinaryLine(l):
			return nil, p.binaryErr(p.i)
		case strings.HasPrefix(l, "@@ -"):
			return nil, p.errf(p.i, "hunk header with no file header before it: expected \"--- a/PATH\" and \"+++ b/PATH\" lines (or \"diff --git\") first")
		default:
			p.i++ // text around the diff
		}
	}
	if len(out) == 0 {
		return nil, &ParseError{Msg: "no file changes found: expected a \"--- a/PATH\" line followed by \"+++ b/PATH\", or \"diff --git a/PATH b/PATH\""}
	}
	return out, nil
}

// patchLine is one line of the patch without its line ending.
type patchLine struct {
	text string
	cr   bool // the line ended in CRLF (or in a lone CR at the end of the patch)
}

func splitPatch(b []byte) []patchLine {
	var out []patchLine
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		cr := len(line) > 0 && line[len(line)-1] == '\r'
		if cr {
			line = line[:len(line)-1]
		}
		out = append(out, patchLine{text: string(line), cr: cr})
	}
	return out
}

type parser struct {
	lines []patchLine
	i     int // index of the next line to read
}

func (p *parser) errf(i int, format string, args ...any) error {
	return &ParseError{Line: i + 1, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) binaryErr(i int) error {
	return &ParseError{Line: i + 1, Msg: ErrBinary.Error(), Err: ErrBinary}
}

func isBinaryLine(l string) bool {
	return strings.HasPrefix(l, "GIT binary patch") ||
		(strings.HasPrefix(l, "Binary files ") && strings.HasSuffix(l, " differ"))
}

// peek returns line i's text, or "" past the end.
func (p *parser) peek(i int) string {
	if i < len(p.lines) {
		return p.lines[i].text
	}
	return ""
}

// plainFile parses a "--- " "+++ " section and its hunks.
func (p *parser) plainFile() (FilePatch, error) {
	start := p.i
	oldName, err := headerName(p.lines[start].text[4:])
	if err != nil {
		return FilePatch{}, p.errf(start, "bad \"---\" name: %v", err)
	}
	newName, err := headerName(p.lines[start+1].text[4:])
	if err != nil {
		return FilePatch{}, p.errf(start+1, "bad \"+++\" name: %v", err)
	}
	p.i += 2
	fp := FilePatch{PatchLine: start + 1}
	switch {
	case oldName == devNull && newName == devNull:
		return fp, p.errf(start, "both \"---\" and \"+++\" are /dev/null")
	case oldName == devNull:
		fp.Op = OpAdd
		newName = stripOne(newName, 'b')
	case newName == devNull:
		fp.Op = OpDelete
		oldName = stripOne(oldName, 'a')
	default:
		fp.Op = OpModify
		if a, b, ok := prefixPair(oldName, newName); ok {
			oldName, newName = stripOne(oldName, a), stripOne(newName, b)
		}
	}
	if err := p.setPaths(&fp, oldName, newName, start); err != nil {
		return fp, err
	}
	if fp.Op == OpModify && fp.OldPath != fp.NewPath {
		return fp, p.errf(start, "old and new names differ (%q, %q): to rename a file use a git diff with \"rename from\" and \"rename to\" lines", fp.OldPath, fp.NewPath)
	}
	if !strings.HasPrefix(p.peek(p.i), "@@") {
		if fp.Op == OpAdd {
			return fp, nil // an empty new file
		}
		return fp, p.errf(p.i, "expected a hunk header \"@@ -l,s +l,s @@\" after the \"+++\" line")
	}
	if err := p.hunks(&fp); err != nil {
		return fp, err
	}
	return fp, nil
}

// gitFile parses a "diff --git" section: extended header lines, optional
// "--- " "+++ " lines and hunks.
func (p *parser) gitFile() (FilePatch, error) {
	start := p.i
	fp := FilePatch{PatchLine: start + 1}
	hdrOld, hdrNew, hdrOK := gitHeaderNames(p.lines[start].text[len("diff --git "):])
	var pa, pb byte // the prefixes the header shows, if any
	if hdrOK {
		if a, b, ok := prefixPair(hdrOld, hdrNew); ok {
			pa, pb = a, b
			hdrOld, hdrNew = stripOne(hdrOld, a), stripOne(hdrNew, b)
		}
	}
	p.i++

	var (
		isNew, isDeleted     bool
		renameFrom, renameTo string
		copyFrom, copyTo     string
		renameLine           int
		dashOld, dashNew     string
		haveDash             bool
		dashLine             int
	)
	name := func(s string) (string, error) {
		n, err := headerName(s)
		if err != nil {
			return "", p.errf(p.i, "bad file name: %v", err)
		}
		return n, nil
	}
	mode := func(s string) (fs.FileMode, error) {
		m, err := parseMode(s)
		if err != nil {
			return 0, &ParseError{Line: p.i + 1, Msg: err.Error()}
		}
		return m, nil
	}
	var err error
header:
	for p.i < len(p.lines) {
		l := p.lines[p.i].text
		switch {
		case strings.HasPrefix(l, "old mode "):
			fp.OldMode, err = mode(l[len("old mode "):])
		case strings.HasPrefix(l, "new mode "):
			fp.NewMode, err = mode(l[len("new mode "):])
		case strings.HasPrefix(l, "deleted file mode "):
			isDeleted = true
			fp.OldMode, err = mode(l[len("deleted file mode "):])
		case strings.HasPrefix(l, "new file mode "):
			isNew = true
			fp.NewMode, err = mode(l[len("new file mode "):])
		case strings.HasPrefix(l, "rename from "):
			renameFrom, err = name(l[len("rename from "):])
			renameLine = p.i
		case strings.HasPrefix(l, "rename old "):
			renameFrom, err = name(l[len("rename old "):])
			renameLine = p.i
		case strings.HasPrefix(l, "rename to "):
			renameTo, err = name(l[len("rename to "):])
		case strings.HasPrefix(l, "rename new "):
			renameTo, err = name(l[len("rename new "):])
		case strings.HasPrefix(l, "copy from "):
			copyFrom, err = name(l[len("copy from "):])
			renameLine = p.i
		case strings.HasPrefix(l, "copy to "):
			copyTo, err = name(l[len("copy to "):])
		case strings.HasPrefix(l, "similarity index "), strings.HasPrefix(l, "dissimilarity index "),
			strings.HasPrefix(l, "index "):
		case isBinaryLine(l):
			return fp, p.binaryErr(p.i)
		case strings.HasPrefix(l, "--- ") && strings.HasPrefix(p.peek(p.i+1), "+++ "):
			dashLine = p.i
			if dashOld, err = name(l[4:]); err != nil {
				return fp, err
			}
			p.i++
			if dashNew, err = name(p.lines[p.i].text[4:]); err != nil {
				return fp, err
			}
			p.i++
			haveDash = true
			if !strings.HasPrefix(p.peek(p.i), "@@") {
				return fp, p.errf(p.i, "expected a hunk header \"@@ -l,s +l,s @@\" after the \"+++\" line")
			}
			break header
		default:
			break header
		}
		if err != nil {
			return fp, err
		}
		p.i++
	}

	if haveDash {
		if pa != 0 {
			dashOld, dashNew = stripOne(dashOld, pa), stripOne(dashNew, pb)
		} else if !hdrOK {
			if dashOld == devNull {
				dashNew = stripOne(dashNew, 'b')
			} else if dashNew == devNull {
				dashOld = stripOne(dashOld, 'a')
			} else if a, b, ok := prefixPair(dashOld, dashNew); ok {
				dashOld, dashNew = stripOne(dashOld, a), stripOne(dashNew, b)
			}
		}
	}

	var oldName, newName string
	switch {
	case isNew && isDeleted:
		return fp, p.errf(start, "file is both new and deleted")
	case (renameFrom != "" || renameTo != "") && (copyFrom != "" || copyTo != ""):
		return fp, p.errf(renameLine, "file is both renamed and copied")
	case renameFrom != "" || renameTo != "" || copyFrom != "" || copyTo != "":
		fp.Op, oldName, newName = OpRename, renameFrom, renameTo
		if copyFrom != "" || copyTo != "" {
			fp.Op, oldName, newName = OpCopy, copyFrom, copyTo
		}
		if oldName == "" || newName == "" {
			return fp, p.errf(renameLine, "%s needs both a \"%s from\" and a \"%s to\" line", fp.Op, fp.Op, fp.Op)
		}
		if isNew || isDeleted {
			return fp, p.errf(start, "a %s cannot also be a new or deleted file", fp.Op)
		}
		if haveDash && (dashOld != oldName || dashNew != newName) {
			return fp, p.errf(dashLine, "\"---\" and \"+++\" names (%q, %q) disagree with the %s lines (%q, %q)", dashOld, dashNew, fp.Op, oldName, newName)
		}
	case isNew || (haveDash && dashOld == devNull):
		fp.Op = OpAdd
		switch {
		case haveDash && dashNew == devNull:
			return fp, p.errf(dashLine, "both \"---\" and \"+++\" are /dev/null")
		case haveDash:
			newName = dashNew
		case hdrOK:
			newName = hdrNew
		}
		if haveDash && dashOld != devNull {
			return fp, p.errf(dashLine, "a new file needs \"--- /dev/null\", found %q", dashOld)
		}
	case isDeleted || (haveDash && dashNew == devNull):
		fp.Op = OpDelete
		switch {
		case haveDash:
			oldName = dashOld
		case hdrOK:
			oldName = hdrOld
		}
		if haveDash && dashNew != devNull {
			return fp, p.errf(dashLine, "a deleted file needs \"+++ /dev/null\", found %q", dashNew)
		}
	default:
		fp.Op = OpModify
		switch {
		case haveDash:
			oldName, newName = dashOld, dashNew
		case hdrOK:
			oldName, newName = hdrOld, hdrNew
		}
		if oldName != "" && newName != "" && oldName != newName {
			return fp, p.errf(start, "old and new names differ (%q, %q) but there are no \"rename from\" and \"rename to\" lines", oldName, newName)
		}
		if newName == "" {
			newName = oldName
		}
		oldName = newName
	}
	if (fp.Op != OpAdd && oldName == "") || (fp.Op != OpDelete && newName == "") {
		return fp, p.errf(start, "cannot tell the file name from the \"diff --git\" line; quote names that contain spaces as git does, or add \"---\" and \"+++\" lines")
	}
	if err := p.setPaths(&fp, oldName, newName, start); err != nil {
		return fp, err
	}
	if strings.HasPrefix(p.peek(p.i), "@@") {
		if err := p.hunks(&fp); err != nil {
			return fp, err
		}
	}
	if fp.Op == OpModify && len(fp.Hunks) == 0 && fp.NewMode == 0 {
		return fp, p.errf(start, "\"diff --git\" section for %q changes nothing: expected hunks, a mode change, a rename, or a new or deleted file", fp.NewPath)
	}
	return fp, nil
}

// setPaths cleans the names and stores those the op uses.
func (p *parser) setPaths(fp *FilePatch, oldName, newName string, line int) error {
	if fp.Op != OpAdd {
		c, err := CleanPath(oldName)
		if err != nil {
			return &ParseError{Line: line + 1, Msg: err.Error(), Err: err}
		}
		fp.OldPath = c
	}
	if fp.Op != OpDelete {
		c, err := CleanPath(newName)
		if err != nil {
			return &ParseError{Line: line + 1, Msg: err.Error(), Err: err}
		}
		fp.NewPath = c
	}
	return nil
}

// hunks parses the hunks that start at the current line, which begins with
// "@@". Blank lines between hunks are skipped.
func (p *parser) hunks(fp *FilePatch) error {
	prevEnd, prevIdx := 0, 0
	for {
		h, err := p.hunk(len(fp.Hunks) + 1)
		if err != nil {
			return err
		}
		n := len(fp.Hunks) + 1
		switch {
		case fp.Op == OpAdd && h.OldLines != 0:
			return p.errf(h.PatchLine-1, "hunk %d (%s) of a new file must have no old lines (\"@@ -0,0 +1,N @@\")", n, h.Header())
		case fp.Op == OpDelete && h.NewLines != 0:
			return p.errf(h.PatchLine-1, "hunk %d (%s) of a deleted file must have no new lines (\"@@ -1,N +0,0 @@\")", n, h.Header())
		}
		begin := h.OldStart
		if h.OldLines > 0 {
			begin--
		}
		if len(fp.Hunks) > 0 && begin < prevEnd {
			return p.errf(h.PatchLine-1, "hunk %d (%s) starts before hunk %d ends (old line %d): hunks must be in file order and must not overlap", n, h.Header(), prevIdx, prevEnd)
		}
		prevEnd, prevIdx = begin+h.OldLines, n
		fp.Hunks = append(fp.Hunks, h)

		j := p.i
		for j < len(p.lines) && p.lines[j].text == "" {
			j++
		}
		if !strings.HasPrefix(p.peek(j), "@@") {
			return nil
		}
		p.i = j
	}
}

// hunk parses one hunk; the current line is its header.
func (p *parser) hunk(n int) (Hunk, error) {
	hl := p.i
	hdr := p.lines[hl]
	h := Hunk{PatchLine: hl + 1}
	var err error
	h.header, h.Section, h.OldStart, h.OldLines, h.NewStart, h.NewLines, err = parseHunkHeader(hdr.text)
	if err != nil {
		return h, p.errf(hl, "hunk %d: %v", n, err)
	}
	p.i++
	body := p.i
	oldLeft, newLeft := h.OldLines, h.NewLines
	last := LineKind(0)
	where := func() string { return fmt.Sprintf("hunk %d (%s at patch line %d)", n, h.Header(), hl+1) }
	countErr := func(i int, format string, args ...any) error {
		o, nw := p.bodyCounts(body)
		msg := fmt.Sprintf("%s: its header counts %d old and %d new lines, but its body has %d old and %d new lines",
			where(), h.OldLines, h.NewLines, o, nw)
		if format != "" {
			msg += "; " + fmt.Sprintf(format, args...)
		}
		return &ParseError{Line: i + 1, Msg: msg}
	}
	marker := func() error {
		switch last {
		case 0:
			return p.errf(p.i, "%s: \"\\ No newline at end of file\" must follow a line", where())
		case LineContext:
			h.OldNoEOL, h.NewNoEOL = true, true
		case LineRemoved:
			h.OldNoEOL = true
		case LineAdded:
			h.NewNoEOL = true
		}
		last = 0
		return nil
	}
	for oldLeft > 0 || newLeft > 0 {
		if p.i >= len(p.lines) {
			return h, countErr(p.i, "the patch ends inside the hunk")
		}
		l := p.lines[p.i]
		if p.fileHeaderAt(p.i) && (oldLeft != 1 || newLeft != 1 || !p.hunkFollows(p.i+2, &h)) {
			// By the counts these would be a removed and an added line, but
			// the "@@" after them cannot follow: the header overcounts and a
			// file header comes next.
			return h, countErr(p.i, "expected a body line starting with ' ', '-', '+' or '\\', found %q", truncate(l.text))
		}
		kind := LineContext
		text := ""
		if l.text != "" {
			kind, text = LineKind(l.text[0]), l.text[1:]
		}
		switch kind {
		case LineContext, LineRemoved, LineAdded:
		case '\\':
			if err := marker(); err != nil {
				return h, err
			}
			p.i++
			continue
		default:
			return h, countErr(p.i, "expected a body line starting with ' ', '-', '+' or '\\', found %q", truncate(l.text))
		}
		if (kind != LineAdded && oldLeft == 0) || (kind != LineRemoved && newLeft == 0) {
			return h, countErr(p.i, "")
		}
		if (kind != LineAdded && h.OldNoEOL) || (kind != LineRemoved && h.NewNoEOL) {
			return h, p.errf(p.i, "%s: a line follows \"\\ No newline at end of file\" on the same side", where())
		}
		if kind != LineAdded {
			oldLeft--
		}
		if kind != LineRemoved {
			newLeft--
		}
		h.Lines = append(h.Lines, Line{Kind: kind, Text: text, CRLF: l.cr && !hdr.cr})
		last = kind
		p.i++
	}
	if strings.HasPrefix(p.peek(p.i), "\\") {
		if err := marker(); err != nil {
			return h, err
		}
		p.i++
	}
	// The counts are spent. A further body line means the header undercounts.
	if p.i < len(p.lines) {
		l := p.lines[p.i].text
		if l != "" && strings.IndexByte(" -+", l[0]) >= 0 &&
			l != "-- " && l != "--" &&
			!(strings.HasPrefix(l, "--- ") && strings.HasPrefix(p.peek(p.i+1), "+++ ")) {
			return h, countErr(p.i, "")
		}
	}
	return h, nil
}

// bodyCounts counts the old and new lines of the hunk body starting at line
// i, as far as it looks like one, to say what a wrong header should read.
func (p *parser) bodyCounts(i int) (old, new int) {
	for ; i < len(p.lines); i++ {
		l := p.lines[i].text
		if l == "" {
			if n := p.peek(i + 1); n == "" || strings.IndexByte(" -+\\", n[0]) < 0 {
				return
			}
			l = " "
		}
		if (strings.HasPrefix(l, "--- ") && strings.HasPrefix(p.peek(i+1), "+++ ")) || l == "-- " {
			return
		}
		switch l[0] {
		case ' ':
			old++
			new++
		case '-':
			old++
		case '+':
			new++
		case '\\':
		default:
			return
		}
	}
	return
}

// parseHunkHeader parses "@@ -l[,s] +l[,s] @@[ section]".
func parseHunkHeader(l string) (header, section string, os, ol, ns, nl int, err error) {
	const want = "expected \"@@ -OLDSTART,OLDCOUNT +NEWSTART,NEWCOUNT @@\""
	rest, ok := strings.CutPrefix(l, "@@ -")
	if !ok {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: %s", truncate(l), want)
	}
	oldR, rest, ok1 := strings.Cut(rest, " +")
	newR, rest, ok2 := strings.Cut(rest, " @@")
	if !ok1 || !ok2 {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: %s", truncate(l), want)
	}
	if os, ol, err = parseRange(oldR); err != nil {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: old range: %v; %s", truncate(l), err, want)
	}
	if ns, nl, err = parseRange(newR); err != nil {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: new range: %v; %s", truncate(l), err, want)
	}
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: %s", truncate(l), want)
	}
	if os == 0 && ol != 0 {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: old lines start at line 1, not 0", truncate(l))
	}
	if ns == 0 && nl != 0 {
		return "", "", 0, 0, 0, 0, fmt.Errorf("malformed hunk header %q: new lines start at line 1, not 0", truncate(l))
	}
	header = l[:len(l)-len(rest)]
	return header, strings.TrimSpace(rest), os, ol, ns, nl, nil
}

func parseRange(s string) (start, n int, err error) {
	a, b, comma := strings.Cut(s, ",")
	if start, err = parseNum(a); err != nil {
		return 0, 0, err
	}
	n = 1
	if comma {
		if n, err = parseNum(b); err != nil {
			return 0, 0, err
		}
	}
	if start+n > maxLineNumber {
		return 0, 0, fmt.Errorf("%q is too large", s)
	}
	return start, n, nil
}

func parseNum(s string) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, fmt.Errorf("%q is not a line number", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a line number", s)
		}
	}
	n, _ := strconv.Atoi(s)
	if n > maxLineNumber {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n, nil
}

// parseMode turns a git mode ("100644") into permission bits.
func parseMode(s string) (fs.FileMode, error) {
	s = strings.TrimSpace(s)
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || s == "" {
		return 0, fmt.Errorf("bad file mode %q: expected an octal mode such as 100644", truncate(s))
	}
	switch m & 0o170000 {
	case 0o100000, 0:
		if m&0o111 != 0 {
			return 0o755, nil
		}
		return 0o644, nil
	case 0o120000:
		return 0, fmt.Errorf("symbolic links (mode %s) are not supported", s)
	case 0o160000:
		return 0, fmt.Errorf("submodules (mode %s) are not supported", s)
	}
	return 0, fmt.Errorf("unsupported file mode %s: only regular files (100644, 100755) can be patched", s)
}

// headerName extracts the file name from what follows "--- ", "+++ ",
// "rename from " and the like: a C-quoted string, or the text up to a tab
// (diff -u puts a timestamp after one), trailing spaces removed.
func headerName(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		name, _, err := unquote(s)
		return name, err
	}
	if i := strings.IndexByte(s, '\t'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimRight(s, " "), nil
}

// gitHeaderNames splits what follows "diff --git " into the two names. Each
// may be quoted; unquoted names containing spaces are split where both
// halves name the same file, as git does.
func gitHeaderNames(s string) (a, b string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		a, rest, err := unquote(s)
		if err != nil || !strings.HasPrefix(rest, " ") {
			return "", "", false
		}
		rest = rest[1:]
		if strings.HasPrefix(rest, `"`) {
			b, tail, err := unquote(rest)
			return a, b, err == nil && tail == ""
		}
		return a, rest, rest != ""
	}
	if i := strings.Index(s, ` "`); i >= 0 && strings.HasSuffix(s, `"`) {
		if b, tail, err := unquote(s[i+1:]); err == nil && tail == "" {
			return s[:i], b, true
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			continue
		}
		a, b := s[:i], s[i+1:]
		if a == "" || b == "" {
			continue
		}
		if a == b || afterFirst(a) != "" && afterFirst(a) == afterFirst(b) {
			return a, b, true
		}
	}
	return "", "", false
}

func afterFirst(s string) string {
	if _, rest, ok := strings.Cut(s, "/"); ok {
		return rest
	}
	return ""
}

// prefixPair reports whether both names carry a one-letter prefix git
// writes ("a/" and "b/", or the mnemonic i/, w/, c/, o/) and which.
func prefixPair(oldName, newName string) (a, b byte, ok bool) {
	const letters = "abciow"
	if len(oldName) > 2 && len(newName) > 2 && oldName[1] == '/' && newName[1] == '/' &&
		oldName[0] != newName[0] &&
		strings.IndexByte(letters, oldName[0]) >= 0 && strings.IndexByte(letters, newName[0]) >= 0 {
		return oldName[0], newName[0], true
	}
	return 0, 0, false
}

// stripOne removes the prefix letter+"/" from name if it has it.
func stripOne(name string, letter byte) string {
	if len(name) > 2 && name[0] == letter && name[1] == '/' {
		return name[2:]
	}
	return name
}

// unquote decodes a C-style quoted string as git writes unusual file names,
// returning the rest of s after the closing quote.
func unquote(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			i++
			if i >= len(s) {
				return "", "", errors.New("unterminated quoted name")
			}
			switch e := s[i]; e {
			case 'a':
				b.WriteByte('\a')
			case 'b':
				b.WriteByte('\b')
			case 't':
				b.WriteByte('\t')
			case 'n':
				b.WriteByte('\n')
			case 'v':
				b.WriteByte('\v')
			case 'f':
				b.WriteByte('\f')
			case 'r':
				b.WriteByte('\r')
			case '"', '\\':
				b.WriteByte(e)
			case '0', '1', '2', '3':
				if i+2 >= len(s) || !isOctal(s[i+1]) || !isOctal(s[i+2]) {
					return "", "", errors.New("bad octal escape in quoted name")
				}
				b.WriteByte((e-'0')<<6 | (s[i+1]-'0')<<3 | (s[i+2] - '0'))
				i += 2
			default:
				return "", "", fmt.Errorf("unknown escape \\%c in quoted name", e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted name")
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 120
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// fileHeaderAt reports whether lines i, i+1 and i+2 are "--- ", "+++ " and
// "@@ ", the start of a file section, which no hunk body can hold.
func (p *parser) fileHeaderAt(i int) bool {
	return strings.HasPrefix(p.peek(i), "--- ") && strings.HasPrefix(p.peek(i+1), "+++ ") &&
		strings.HasPrefix(p.peek(i+2), "@@ ")
}

// hunkFollows reports whether line i is a hunk header that can follow h in
// the same file.
func (p *parser) hunkFollows(i int, h *Hunk) bool {
	_, _, os, ol, _, _, err := parseHunkHeader(p.peek(i))
	if ol > 0 {
		os--
	}
	return err == nil && os >= h.OldStart-1+h.OldLines
}
