package main

import (
	"fmt"
	"os"
)

// step1 does step 1.
func step1(x int) int {
	if x < 0 {
		return -x
	}
	return x + 1
}

// step2 does step 2.
func step2(x int) int {
	if x < 0 {
		return -x
	}
	return x + 2
}

// step3 does step 3.
func step3(x int) int {
	if x < 0 {
		return -x
	}
	return x + 3
}

// step4 does step 4.
func step4(x int) int {
	if x < 0 {
		return -x
	}
	return x + 4
}

// step5 does step 5.
func step5(x int) int {
	if x < 0 {
		return -x
	}
	return x + 5
}

// step6 does step 6.
func step6(x int) int {
	if x < 0 {
		return -x
	}
	return x + 6
}

// step7 does step 7.
func step7(x int) int {
	if x < 0 {
		return -x
	}
	return x + 7
}

// step8 does step 8.
func step8(x int) int {
	if x < 0 {
		return -x
	}
	return x + 8
}

func main() {
	fmt.Println(step1(1))
	os.Exit(0)
}
