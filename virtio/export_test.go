package virtio

// ActivateForTest binds q to mem as the transport does at DRIVER_OK.
func ActivateForTest(q *Queue, mem Memory, eventIdx bool) error { return q.activate(mem, eventIdx) }

// NeedEventForTest is the device's vring_need_event.
var NeedEventForTest = needEvent
