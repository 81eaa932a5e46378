package virtio

// ActivateForTest binds q to mem as the transport does at DRIVER_OK.
func ActivateForTest(q *Queue, mem Memory) error { return q.activate(mem) }
