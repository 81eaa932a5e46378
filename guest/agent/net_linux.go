package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/pyro-mcp/pyro/guest/agent/proto"
)

// networkUp configures the guest's NIC, if the VM has one (a virtio-net
// device, whose driver the initramfs loaded): proto.GuestAddr/GuestPrefixLen,
// up, with a default route via GatewayAddr, and ResolvConfPath naming
// GatewayAddr unless the user replaced pyro's file. The MTU is the
// device's, which the driver already set. Without a NIC it does nothing.
// It runs in the guest's root, after mountLate.
func networkUp() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	var nic netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback == 0 && a.EncapType == "ether" && l.Type() == "device" {
			nic = l
			break
		}
	}
	if nic == nil {
		return nil
	}
	name := nic.Attrs().Name
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: proto.GuestAddr.AsSlice(), Mask: net.CIDRMask(proto.GuestPrefixLen, 32)}}
	if err := netlink.AddrReplace(nic, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr.IPNet, name, err)
	}
	if err := netlink.LinkSetUp(nic); err != nil {
		return fmt.Errorf("bringing up %s: %w", name, err)
	}
	route := &netlink.Route{LinkIndex: nic.Attrs().Index, Gw: proto.GatewayAddr.AsSlice()}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %s on %s: %w", proto.GatewayAddr, name, err)
	}
	return writeResolvConf(ResolvConfPath)
}

// writeResolvConf writes resolvConf() to path unless the file there is the
// user's (see ownsResolvConf). A symlink (to a resolver daemon's file) is
// the user's too.
func writeResolvConf(path string) error {
	fi, err := os.Lstat(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var old []byte
	if exists {
		if !fi.Mode().IsRegular() {
			return nil
		}
		if old, err = os.ReadFile(path); err != nil {
			return err
		}
	}
	if !ownsResolvConf(old, exists) {
		return nil
	}
	return os.WriteFile(path, resolvConf(), 0o644)
}
