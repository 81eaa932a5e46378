package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"
)

// buildWheel returns a pure-Python wheel (PEP 427) of the package files
// (path in the wheel → content), for a seed whose dependency must install
// with pip --no-index: the workspace reaches no package index.
func buildWheel(name, version string, files map[string]string) ([]byte, error) {
	info := fmt.Sprintf("%s-%s.dist-info", name, version)
	all := map[string]string{}
	for p, c := range files {
		all[p] = c
	}
	all[info+"/METADATA"] = fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: a stand-in dependency for pyro's smoke pack\n", name, version)
	all[info+"/WHEEL"] = "Wheel-Version: 1.0\nGenerator: mcpdrive\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
	names := make([]string, 0, len(all)+1)
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	// RECORD lists every file with its hash and size, and itself without.
	var record strings.Builder
	for _, p := range names {
		sum := sha256.Sum256([]byte(all[p]))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", p, base64.RawURLEncoding.EncodeToString(sum[:]), len(all[p]))
	}
	recordName := info + "/RECORD"
	fmt.Fprintf(&record, "%s,,\n", recordName)
	all[recordName] = record.String()
	names = append(names, recordName) // RECORD goes last, as wheel tools write it

	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	stamp := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) // a fixed date: the same seed every run
	for _, p := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: p, Method: zip.Deflate, Modified: stamp})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write([]byte(all[p])); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// wheelFileName is the file name pip expects of a pure-Python wheel.
func wheelFileName(name, version string) string {
	return fmt.Sprintf("%s-%s-py3-none-any.whl", name, version)
}
