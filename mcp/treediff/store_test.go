package treediff

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestWriteBaselineRoundTrip(t *testing.T) {
	base, cur := sinkTrees(true)
	base = append(base, file("dup1", "same\n"), file("dup2", "same\n"), file("bad\xffutf8", "x\n"), link("odd link", "t\n\"\xfe"))
	data := mkTar(t, base...)
	dir := t.TempDir()
	ix, err := WriteBaseline(dir, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := IndexTar(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ix, mem) || !reflect.DeepEqual(loaded, mem) {
		t.Fatal("WriteBaseline, LoadIndex and IndexTar disagree")
	}
	if err := loaded.Verify(DirBlobs{dir}); err != nil {
		t.Fatal(err)
	}
	// One blob per distinct content, named by its SHA-256.
	distinct := map[string]bool{}
	for _, e := range base {
		if e.typ == File {
			s := sha256.Sum256([]byte(e.body))
			distinct[hex.EncodeToString(s[:])] = true
		}
	}
	names := blobNames(t, dir)
	if len(names) != len(distinct) {
		t.Errorf("%d blobs, want %d", len(names), len(distinct))
	}
	for _, n := range names {
		if !distinct[n] {
			t.Errorf("unexpected blob %s", n)
		}
	}
	if e, ok := loaded.Lookup("bad\xffutf8"); !ok || e.Type != File {
		t.Error("non-UTF-8 path did not round-trip")
	}
	if e, ok := loaded.Lookup("odd link"); !ok || e.Target != "t\n\"\xfe" {
		t.Errorf("symlink target did not round-trip: %+v", e)
	}
	// The stored baseline serves Diff as the in-memory one does.
	want := diffTrees(t, base, cur, Options{MaxFileBytes: 300})
	got, err := Diff(loaded, DirBlobs{dir}, bytes.NewReader(mkTar(t, cur...)), Options{MaxFileBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Error("Diff against the stored baseline differs")
	}
}

func blobNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, blobsDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// The documented format, byte for byte.
func TestIndexFormat(t *testing.T) {
	d := t.TempDir()
	_, err := WriteBaseline(d, bytes.NewReader(mkTar(t, dir("src"), exe("src/run", "hi\n"), link("l", "src/run"), file("a b", ""))))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(d, "index"))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
	gid := func(s string) string { x := gitID([]byte(s)); return hex.EncodeToString(x[:]) }
	body := "pyro-treediff index v1 4\n" +
		"f 644 0 " + sum("") + " " + gid("") + " \"a b\"\n" +
		"l 777 \"l\" \"src/run\"\n" +
		"d 755 \"src\"\n" +
		"f 755 3 " + sum("hi\n") + " " + gid("hi\n") + " \"src/run\"\n"
	if want := body + "sha256 " + sum(body) + "\n"; string(b) != want {
		t.Errorf("index:\n%s\nwant:\n%s", b, want)
	}
	if gid("") != "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391" {
		t.Error("git's empty blob name is wrong")
	}
}

func TestLoadIndexErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadIndex(dir); !errors.Is(err, ErrNoBaseline) {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := WriteBaseline(dir, bytes.NewReader(mkTar(t, file("a", "x\n"), link("l", "a")))); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(filepath.Join(dir, indexName))
	body := string(good[:bytes.LastIndex(good[:len(good)-1], []byte("\n"))+1])
	resum := func(body string) string {
		s := sha256.Sum256([]byte(body))
		return body + "sha256 " + hex.EncodeToString(s[:]) + "\n"
	}
	for name, c := range map[string]struct{ data, err string }{
		"truncated":    {string(good[:len(good)-10]), "truncated"},
		"no trailer":   {body, "checksum"},
		"edited":       {strings.Replace(string(good), "644", "755", 1), "checksum"},
		"version 2":    {strings.Replace(resum(body), " v1 ", " v2 ", 1), "unsupported index version"},
		"not an index": {"hello\n", "not a treediff index"},
		"count":        {resum(strings.Replace(body, " v1 2", " v1 3", 1)), "header says 3"},
		"unsorted":     {resum(strings.Replace(body, "\"l\" \"a\"", "\"0\" \"a\"", 1)), "not sorted"},
		"dotdot":       {resum(strings.Replace(body, "\"l\" \"a\"", "\"z/../y\" \"a\"", 1)), "bad path"},
		"bad type":     {resum(strings.Replace(body, "l 777", "x 777", 1)), "bad type"},
		"bad mode":     {resum(strings.Replace(body, "l 777", "l 17777", 1)), "bad mode"},
	} {
		if err := os.WriteFile(filepath.Join(dir, indexName), []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadIndex(dir); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one saying %q", name, err, c.err)
		}
	}
}

// A crash at any point of WriteBaseline leaves either no index, or an
// index all of whose blobs are in place: never one naming a missing blob.
func TestWriteBaselineCrash(t *testing.T) {
	first := mkTar(t, file("a", "one\n"), file("b", "two\n"), file("c", strings.Repeat("big", 1<<19)))
	second := mkTar(t, file("a", "one!\n"), file("d", "four\n"), file("c", strings.Repeat("BIG", 1<<19)))
	for _, stage := range []string{"blobs-synced", "index-written", "index-renamed"} {
		for _, rebaseline := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/rebaseline=%v", stage, rebaseline), func(t *testing.T) {
				dir := t.TempDir()
				var prev *Index
				if rebaseline {
					var err error
					if prev, err = WriteBaseline(dir, bytes.NewReader(first)); err != nil {
						t.Fatal(err)
					}
				}
				crash := errors.New("crash")
				testHook = func(s string) error {
					if s == stage {
						return crash
					}
					return nil
				}
				defer func() { testHook = nil }()
				if _, err := WriteBaseline(dir, bytes.NewReader(second)); !errors.Is(err, crash) {
					t.Fatalf("WriteBaseline: %v", err)
				}
				testHook = nil
				ix, err := LoadIndex(dir)
				switch {
				case stage == "index-renamed":
					if err != nil {
						t.Fatal(err)
					}
					if _, ok := ix.Lookup("d"); !ok {
						t.Error("the new index is not in place")
					}
				case rebaseline:
					if err != nil || !reflect.DeepEqual(ix, prev) {
						t.Fatalf("the previous index is lost: %v", err)
					}
				default:
					if !errors.Is(err, ErrNoBaseline) {
						t.Fatalf("LoadIndex after a crash before the index: %v", err)
					}
					if len(blobNames(t, dir)) == 0 {
						t.Error("no blobs written before the crash; the test proves nothing")
					}
					return
				}
				if err := ix.Verify(DirBlobs{dir}); err != nil {
					t.Fatalf("index names a missing or bad blob: %v", err)
				}
				// The next baseline cleans up what the crash left.
				if _, err := WriteBaseline(dir, bytes.NewReader(first)); err != nil {
					t.Fatal(err)
				}
				if n := len(blobNames(t, dir)); n != 3 {
					t.Errorf("%d files in blobs/ after a clean baseline, want 3", n)
				}
			})
		}
	}
}

// A stream that fails midway leaves the previous baseline in force.
func TestWriteBaselineStreamError(t *testing.T) {
	dir := t.TempDir()
	prev, err := WriteBaseline(dir, bytes.NewReader(mkTar(t, file("a", "1\n"))))
	if err != nil {
		t.Fatal(err)
	}
	data := mkTar(t, file("a", "2\n"), file("b", strings.Repeat("x", 10000)))
	for _, r := range []io.Reader{
		bytes.NewReader(data[:len(data)-3000]),
		io.MultiReader(bytes.NewReader(data[:1500]), errReader{}),
	} {
		if _, err := WriteBaseline(dir, r); err == nil {
			t.Fatal("no error")
		}
		ix, err := LoadIndex(dir)
		if err != nil || !reflect.DeepEqual(ix, prev) {
			t.Fatalf("previous baseline lost: %v", err)
		}
		if err := ix.Verify(DirBlobs{dir}); err != nil {
			t.Fatal(err)
		}
	}
	// Files left under temporary names never count as blobs.
	for _, n := range blobNames(t, dir) {
		if strings.HasPrefix(n, tmpPrefix) {
			t.Errorf("temporary file %s left behind", n)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("guest went away") }

// A blob damaged on disk is detected when read, not used.
func TestDamagedBlob(t *testing.T) {
	dir := t.TempDir()
	ix, err := WriteBaseline(dir, bytes.NewReader(mkTar(t, file("a", "one\ntwo\n"))))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := ix.Lookup("a")
	p := filepath.Join(dir, blobsDir, hex.EncodeToString(e.Sum[:]))
	if err := os.WriteFile(p, []byte("one\nTWO\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ix.Verify(DirBlobs{dir}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Verify: %v", err)
	}
	_, err = Diff(ix, DirBlobs{dir}, bytes.NewReader(mkTar(t, file("a", "one\n"))), Options{})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Diff: %v", err)
	}
	os.Remove(p)
	if err := ix.Verify(DirBlobs{dir}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Verify with the blob gone: %v", err)
	}
}

func TestModeText(t *testing.T) {
	var m Mode
	if err := m.UnmarshalText([]byte("100755")); err != nil || m != 0o100755 || m.String() != "100755" {
		t.Errorf("%v %v", m, err)
	}
	if err := m.UnmarshalText([]byte("9")); err == nil {
		t.Error("accepted 9")
	}
	names := []string{}
	for _, e := range []Entry{{Type: File, Perm: 0o600}, {Type: File, Perm: 0o700}, {Type: Symlink, Perm: 0o777}} {
		names = append(names, e.Mode().String()+"/"+e.gitMode().String())
	}
	if want := []string{"100600/100644", "100700/100755", "120777/120000"}; !slices.Equal(names, want) {
		t.Errorf("%q", names)
	}
}
