package blk

import "time"

func waitABit() { time.Sleep(time.Millisecond) }
