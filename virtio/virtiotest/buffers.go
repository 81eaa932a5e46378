package virtiotest

// Helpers for devices that fill buffers the driver posts ahead of time
// (virtio-net's receive queue, virtio-vsock's rx and event queues).

// Post adds n chains of one device-writable buffer of size bytes each,
// as a driver refilling a receive ring does, and returns them in ring
// order. It does not notify.
func (q *DriverQueue) Post(n int, size uint32) []Request {
	q.d.T.Helper()
	out := make([]Request, n)
	for i := range out {
		out[i] = q.Add(nil, []uint32{size})
	}
	return out
}

// Written returns the first n bytes the device wrote into req's
// device-writable buffers, in chain order. It fails the test if n is more
// than they hold.
func (d *Driver) Written(req Request, n uint32) []byte {
	d.T.Helper()
	out := make([]byte, 0, n)
	for i, a := range req.Writable {
		if uint32(len(out)) == n {
			break
		}
		take := min(req.WLens[i], n-uint32(len(out)))
		out = append(out, d.Bytes(a, take)...)
	}
	if uint32(len(out)) < n {
		d.T.Fatalf("virtiotest: %d bytes written into a chain of %d", n, len(out))
	}
	return out
}
