package main

// Flag values pyro workspace commands share.

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

type secondsValue struct{ n *int }

type mibValue struct{ n *int }

func (v secondsValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return (time.Duration(*v.n) * time.Second).String()
}

func (v secondsValue) Set(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return fmt.Errorf("must not be negative")
		}
		*v.n = n
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want seconds or a duration such as 90s, 10m, 2h")
	}
	if d%time.Second != 0 {
		return fmt.Errorf("want whole seconds")
	}
	*v.n = int(d / time.Second)
	return nil
}

func (v secondsValue) Type() string { return "duration" }

func (v mibValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return strconv.Itoa(*v.n)
}

func (v mibValue) Set(s string) error {
	mul := 1
	switch {
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "GiB"):
		mul, s = 1024, strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "G")
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "MiB"):
		s = strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "M")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return fmt.Errorf("want MiB, or a size such as 512M or 4G")
	}
	*v.n = n * mul
	return nil
}

func (v mibValue) Type() string { return "MiB" }
